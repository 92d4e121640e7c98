package ai.llava.it.shared;

import ai.llava.client.Analysis;
import ai.llava.client.ChatCompletion;
import ai.llava.client.ChatRequest;
import ai.llava.client.Image;
import ai.llava.client.LlavaClient;
import ai.llava.client.Preset;
import ai.llava.client.RetryPolicy;
import ai.llava.spring.MicrometerCallObserver;
import ai.llava.teststack.DemoStack;
import com.fasterxml.jackson.databind.JsonNode;
import io.micrometer.core.instrument.MeterRegistry;
import org.junit.jupiter.api.Test;
import org.springframework.beans.factory.annotation.Autowired;
import org.springframework.boot.test.web.server.LocalServerPort;
import org.springframework.test.context.DynamicPropertyRegistry;
import org.springframework.test.context.DynamicPropertySource;
import org.springframework.test.context.TestPropertySource;

import java.time.Duration;
import java.util.Set;
import java.util.concurrent.CompletableFuture;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * The starter in a running Spring Boot application (a subclass per Boot line: a web application on a
 * random port, its own test annotations): the bean on the application's RestClient, its observations,
 * its health indicator, and a model restart seen through both.
 */
@TestPropertySource(properties = {"llava.api-key=it-key", "llava.retry.max-attempts=100",
        "llava.health.cache-ttl=100ms", "management.endpoints.web.exposure.include=health,metrics",
        "management.endpoint.health.show-details=always", "management.endpoint.health.probes.enabled=true"})
public abstract class StarterChecks {

    protected static final DemoStack STACK = DemoStack.shared();
    private static final byte[] PHOTO = Photos.jpeg(200, 150);

    @DynamicPropertySource
    static void gateway(DynamicPropertyRegistry registry) {
        registry.add("llava.base-url", STACK::gatewayUrl);
    }

    @Autowired
    protected LlavaClient llava;

    @Autowired
    protected MeterRegistry meters;

    @LocalServerPort
    protected int port;

    private double count(String meter, String... tags) {
        var timer = meters.find(meter).tags(tags).timer();
        return timer == null ? 0 : timer.count();
    }

    @Test
    void the_bean_answers_a_preset_through_rest_client_and_records_both_observations() {
        String[] tags = {MicrometerCallObserver.OPERATION, "analyze", MicrometerCallObserver.STATUS, "SUCCESS"};
        double before = count(MicrometerCallObserver.NAME, tags);
        double httpBefore = count("http.client.requests", "status", "200");

        Analysis<QcReport> answer = llava.analyze(Image.of(PHOTO), Preset.QC_INSPECTION, QcReport.class);
        assertThat(answer.data().verdict()).isIn("pass", "fail");

        assertThat(count(MicrometerCallObserver.NAME, tags)).isEqualTo(before + 1);
        assertThat(meters.find(MicrometerCallObserver.NAME).tagKeys(MicrometerCallObserver.REQUEST_ID).timers())
                .as("the request id is no metric tag").isEmpty();
        // The application's RestClient.Builder carries its observations: the same call as an HTTP client request.
        assertThat(count("http.client.requests", "status", "200")).isGreaterThan(httpBefore);
    }

    @Test
    void the_health_indicator_reports_the_ready_model() {
        JsonNode health = new AppHealth(port).get("/llava");
        assertThat(health.path("status").asText()).isEqualTo("UP");
        assertThat(health.path("details").path("state").asText()).isEqualTo("ready");
        assertThat(health.path("details").path("model").asText()).isEqualTo("llava-demo");
        assertThat(health.path("details").path("gateway").asText()).isEqualTo(STACK.gatewayUrl() + "/");
    }

    /**
     * The model process dies (SIGKILL) and the supervisor starts another: "llava" goes OUT_OF_SERVICE and
     * back to UP while liveness and readiness stay UP; calls made meanwhile are retried until the model
     * is back, by the starter's bean and by the plain client alike; free text gets the fallback at once.
     */
    @Test
    void calls_made_while_the_model_restarts_are_answered_once_it_is_back() throws Exception {
        AppHealth health = new AppHealth(port);
        assertThat(health.get("/llava").path("status").asText()).isEqualTo("UP");
        RecordingTransport transport = new RecordingTransport();
        LlavaClient plain = LlavaClient.builder().baseUrl(STACK.gatewayUrl()).apiKey("it-key").transport(transport)
                .retry(new RetryPolicy(100, Duration.ofMinutes(3), Duration.ofMillis(500), Duration.ofSeconds(5)))
                .build();

        long crashed = STACK.crashModel();
        assertThat(plain.analyze(Image.of(PHOTO), "Are you there?").fallback()).isTrue();
        CompletableFuture<Analysis<QcReport>> preset = CompletableFuture.supplyAsync(() ->
                llava.analyze(Image.of(PHOTO), Preset.QC_INSPECTION, QcReport.class));
        CompletableFuture<ChatCompletion> chat = CompletableFuture.supplyAsync(() -> plain.chat(
                ChatRequest.builder().user("What is it?", Image.of(PHOTO)).maxTokens(8).build()));

        Set<String> seen = health.throughRestart(Duration.ofMinutes(3));
        assertThat(seen).contains("OUT_OF_SERVICE", "UP back").doesNotContain("DOWN");
        STACK.awaitModelReady(crashed, Duration.ofMinutes(2));
        assertThat(preset.get().data().verdict()).isIn("pass", "fail");
        assertThat(chat.get().content()).isNotBlank();
        assertThat(transport.statuses()).contains(503).endsWith(200);
    }
}
