package ai.llava.it;

import ai.llava.client.Analysis;
import ai.llava.client.ChatCompletion;
import ai.llava.client.ChatRequest;
import ai.llava.client.Image;
import ai.llava.client.LlavaClient;
import ai.llava.client.Preset;
import ai.llava.client.RetryPolicy;
import ai.llava.teststack.DemoStack;
import com.fasterxml.jackson.databind.JsonNode;
import org.junit.jupiter.api.Test;
import org.springframework.beans.factory.annotation.Autowired;
import org.springframework.boot.autoconfigure.EnableAutoConfiguration;
import org.springframework.boot.test.context.SpringBootTest;
import org.springframework.boot.test.web.server.LocalServerPort;
import org.springframework.context.annotation.Configuration;
import org.springframework.test.context.DynamicPropertyRegistry;
import org.springframework.test.context.DynamicPropertySource;
import org.springframework.web.client.RestClient;

import java.time.Duration;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.CompletableFuture;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * The model process dies (SIGKILL) and the supervisor starts another: the app's "llava" health shows
 * it (OUT_OF_SERVICE, then UP) while its liveness and readiness stay UP; calls made meanwhile are
 * retried until the model is back, by the starter's bean and by the plain client alike.
 */
@SpringBootTest(classes = ModelRestartIT.App.class, webEnvironment = SpringBootTest.WebEnvironment.RANDOM_PORT,
        properties = {"llava.api-key=it-key", "llava.retry.max-attempts=100", "llava.retry.deadline=3m",
                "llava.health.cache-ttl=100ms", "management.endpoints.web.exposure.include=health",
                "management.endpoint.health.show-details=always", "management.endpoint.health.probes.enabled=true"})
class ModelRestartIT {

    @Configuration(proxyBeanMethods = false)
    @EnableAutoConfiguration
    static class App {
    }

    record Defect(String kind, String location) {
    }

    record QcReport(String verdict, List<Defect> defects) {
    }

    static final DemoStack STACK = DemoStack.shared();
    static final byte[] PHOTO = Photos.jpeg(200, 150);

    @DynamicPropertySource
    static void gateway(DynamicPropertyRegistry registry) {
        registry.add("llava.base-url", STACK::gatewayUrl);
    }

    @Autowired
    LlavaClient starterBean;

    @LocalServerPort
    int port;

    JsonNode health(String path) {
        return RestClient.create("http://127.0.0.1:" + port).get().uri("/actuator/health" + path)
                .exchange((request, response) -> response.bodyTo(JsonNode.class));
    }

    @Test
    void calls_made_while_the_model_restarts_are_answered_once_it_is_back() throws Exception {
        assertThat(health("/llava").path("status").asText()).isEqualTo("UP");
        RecordingTransport transport = new RecordingTransport();
        LlavaClient plain = LlavaClient.builder().baseUrl(STACK.gatewayUrl()).apiKey("it-key").transport(transport)
                .retry(new RetryPolicy(100, Duration.ofMinutes(3), Duration.ofMillis(500), Duration.ofSeconds(5)))
                .build();

        long crashed = STACK.crashModel();
        // Free text asked now gets the gateway's fallback message at once: it is meant to be shown.
        assertThat(plain.analyze(Image.of(PHOTO), "Are you there?").fallback()).isTrue();
        CompletableFuture<Analysis<QcReport>> preset = CompletableFuture.supplyAsync(() ->
                starterBean.analyze(Image.of(PHOTO), Preset.QC_INSPECTION, QcReport.class));
        CompletableFuture<ChatCompletion> chat = CompletableFuture.supplyAsync(() -> plain.chat(
                ChatRequest.builder().user("What is it?", Image.of(PHOTO)).maxTokens(8).build()));

        Set<String> seen = new LinkedHashSet<>();
        long end = System.nanoTime() + Duration.ofMinutes(3).toNanos();
        while (System.nanoTime() < end && !(seen.contains("OUT_OF_SERVICE") && seen.contains("UP back"))) {
            String status = health("/llava").path("status").asText();
            seen.add(status.equals("UP") && seen.contains("OUT_OF_SERVICE") ? "UP back" : status);
            assertThat(health("/liveness").path("status").asText()).isEqualTo("UP");
            assertThat(health("/readiness").path("status").asText()).isEqualTo("UP");
            Thread.sleep(100);
        }
        assertThat(seen).contains("OUT_OF_SERVICE", "UP back").doesNotContain("DOWN");
        STACK.awaitModelReady(crashed, Duration.ofMinutes(1));

        assertThat(preset.get().data().verdict()).isIn("pass", "fail");
        assertThat(chat.get().content()).isNotBlank();
        assertThat(transport.statuses()).contains(503).endsWith(200);
    }
}
