package ai.llava.spring;

import ai.llava.client.CallObserver;
import io.micrometer.observation.Observation;
import io.micrometer.observation.ObservationRegistry;

/**
 * Each call of the client as one Micrometer observation {@value #NAME} (a timer, and a span when
 * tracing is on), across its retries. Tags: {@code llava.operation} and {@code llava.status} (a few
 * fixed values each). The call's request id (sent as X-Request-ID, logged by the gateway as
 * client_request_id) is unbounded, so it is a high-cardinality key value: on spans, never a metric tag.
 */
public final class MicrometerCallObserver implements CallObserver {

    public static final String NAME = "llava.client.requests";
    public static final String OPERATION = "llava.operation";
    public static final String STATUS = "llava.status";
    public static final String REQUEST_ID = "llava.request.id";

    private final ObservationRegistry registry;

    public MicrometerCallObserver(ObservationRegistry registry) {
        this.registry = registry;
    }

    @Override
    public Call start(String operation) {
        Observation observation = Observation.createNotStarted(NAME, registry)
                .contextualName("llava " + operation)
                .lowCardinalityKeyValue(OPERATION, operation)
                .start();
        return new Call() {
            @Override
            public void requestId(String requestId) {
                observation.highCardinalityKeyValue(REQUEST_ID, requestId);
            }

            @Override
            public void end(String status, Throwable error) {
                observation.lowCardinalityKeyValue(STATUS, status);
                if (error != null) {
                    observation.error(error);
                }
                observation.stop();
            }
        };
    }
}
