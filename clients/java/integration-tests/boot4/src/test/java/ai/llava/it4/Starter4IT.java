package ai.llava.it4;

import ai.llava.client.Analysis;
import ai.llava.client.ChatCompletion;
import ai.llava.client.ChatRequest;
import ai.llava.client.Image;
import ai.llava.client.LlavaClient;
import ai.llava.client.Preset;
import ai.llava.spring.MicrometerCallObserver;
import ai.llava.teststack.DemoStack;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.micrometer.core.instrument.MeterRegistry;
import org.junit.jupiter.api.Test;
import org.springframework.beans.factory.annotation.Autowired;
import org.springframework.boot.autoconfigure.EnableAutoConfiguration;
import org.springframework.boot.test.context.SpringBootTest;
import org.springframework.boot.test.web.server.LocalServerPort;
import org.springframework.context.annotation.Configuration;
import org.springframework.test.context.DynamicPropertyRegistry;
import org.springframework.test.context.DynamicPropertySource;

import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.CompletableFuture;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * The starter in a Spring Boot 4.0 application: the bean on Boot 4's RestClient, the health indicator
 * on spring-boot-health through a model restart (liveness and readiness stay UP), the metrics.
 */
@SpringBootTest(classes = Starter4IT.App.class, webEnvironment = SpringBootTest.WebEnvironment.RANDOM_PORT,
        properties = {"llava.api-key=it-key", "llava.retry.max-attempts=100", "llava.health.cache-ttl=100ms",
                "management.endpoints.web.exposure.include=health", "management.endpoint.health.show-details=always",
                "management.endpoint.health.probes.enabled=true", "management.metrics.enabled=true"})
class Starter4IT {

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
    LlavaClient llava;

    @Autowired
    MeterRegistry meters;

    @LocalServerPort
    int port;

    final HttpClient http = HttpClient.newHttpClient();

    JsonNode health(String path) throws Exception {
        HttpResponse<String> response = http.send(HttpRequest.newBuilder(
                URI.create("http://127.0.0.1:" + port + "/actuator/health" + path)).build(),
                HttpResponse.BodyHandlers.ofString());
        return new ObjectMapper().readTree(response.body());
    }

    @Test
    void the_bean_answers_a_preset_and_records_an_observation() {
        Analysis<QcReport> answer = llava.analyze(Image.of(PHOTO), Preset.QC_INSPECTION, QcReport.class);
        assertThat(answer.data().verdict()).isIn("pass", "fail");
        assertThat(meters.get(MicrometerCallObserver.NAME).tag(MicrometerCallObserver.OPERATION, "analyze")
                .tag(MicrometerCallObserver.STATUS, "SUCCESS").timer().count()).isGreaterThanOrEqualTo(1);
    }

    @Test
    void the_health_indicator_follows_a_model_restart_without_the_apps_probes() throws Exception {
        JsonNode ready = health("/llava");
        assertThat(ready.path("status").asText()).isEqualTo("UP");
        assertThat(ready.path("details").path("state").asText()).isEqualTo("ready");

        long crashed = STACK.crashModel();
        CompletableFuture<ChatCompletion> chat = CompletableFuture.supplyAsync(() -> llava.chat(
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
        assertThat(chat.get().content()).isNotBlank();
    }
}
