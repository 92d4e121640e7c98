package ai.llava.client.transport;

import java.io.IOException;

/**
 * What carries the client's requests: {@link JdkTransport} (the JDK {@code HttpClient}) by default,
 * a Spring {@code RestClient} in the Spring Boot starter. Everything else (JSON, retries, errors,
 * observations) is the client's, so both behave alike.
 */
@FunctionalInterface
public interface Transport {

    /**
     * Sends the call and returns once the response headers are in.
     *
     * @throws java.net.http.HttpTimeoutException when {@link HttpCall#timeout()} passed first
     *                                            ({@link java.net.http.HttpConnectTimeoutException}
     *                                            when no connection was made)
     * @throws IOException                        when the exchange failed
     */
    HttpReply send(HttpCall call) throws IOException;
}
