package ai.llava.it;

import ai.llava.client.Analysis;
import ai.llava.client.Image;
import ai.llava.client.LlavaClient;
import ai.llava.client.Preset;
import ai.llava.spring.MicrometerCallObserver;
import ai.llava.teststack.DemoStack;
import com.fasterxml.jackson.databind.JsonNode;
import io.micrometer.core.instrument.MeterRegistry;
import org.junit.jupiter.api.Test;
import org.springframework.beans.factory.annotation.Autowired;
import org.springframework.boot.autoconfigure.EnableAutoConfiguration;
import org.springframework.boot.test.autoconfigure.actuate.observability.AutoConfigureObservability;
import org.springframework.boot.test.context.SpringBootTest;
import org.springframework.boot.test.web.server.LocalServerPort;
import org.springframework.context.annotation.Configuration;
import org.springframework.test.context.DynamicPropertyRegistry;
import org.springframework.test.context.DynamicPropertySource;
import org.springframework.web.client.RestClient;

import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;

/** The starter in a Spring Boot 3.5 application: its bean on RestClient, its health indicator, its metrics. */
@SpringBootTest(classes = StarterIT.App.class, webEnvironment = SpringBootTest.WebEnvironment.RANDOM_PORT,
        properties = {"llava.api-key=it-key", "management.endpoints.web.exposure.include=health,metrics",
                "management.endpoint.health.show-details=always"})
@AutoConfigureObservability(tracing = false)
class StarterIT {

    @Configuration(proxyBeanMethods = false)
    @EnableAutoConfiguration
    static class App {
    }

    record Defect(String kind, String location) {
    }

    record QcReport(String verdict, List<Defect> defects) {
    }

    @DynamicPropertySource
    static void gateway(DynamicPropertyRegistry registry) {
        registry.add("llava.base-url", () -> DemoStack.shared().gatewayUrl());
    }

    @Autowired
    LlavaClient llava;

    @Autowired
    MeterRegistry meters;

    @LocalServerPort
    int port;

    @Test
    void the_bean_answers_a_preset_through_rest_client_and_records_both_observations() {
        Analysis<QcReport> answer = llava.analyze(Image.of(Photos.jpeg(200, 150)), Preset.QC_INSPECTION, QcReport.class);
        assertThat(answer.data().verdict()).isIn("pass", "fail");

        assertThat(meters.get(MicrometerCallObserver.NAME).tag(MicrometerCallObserver.OPERATION, "analyze")
                .tag(MicrometerCallObserver.STATUS, "SUCCESS").timer().count()).isEqualTo(1);
        assertThat(meters.find(MicrometerCallObserver.NAME).tagKeys(MicrometerCallObserver.REQUEST_ID).timers())
                .as("the request id is no metric tag").isEmpty();
        // Boot's RestClient.Builder carries the application's observations: the same call as an HTTP client request.
        assertThat(meters.get("http.client.requests").tag("status", "200").timer().count()).isGreaterThanOrEqualTo(1);
    }

    @Test
    void the_health_indicator_reports_the_ready_model() {
        JsonNode health = RestClient.create("http://127.0.0.1:" + port).get().uri("/actuator/health/llava")
                .retrieve().body(JsonNode.class);
        assertThat(health.path("status").asText()).isEqualTo("UP");
        assertThat(health.path("details").path("state").asText()).isEqualTo("ready");
        assertThat(health.path("details").path("model").asText()).isEqualTo("llava-demo");
        assertThat(health.path("details").path("gateway").asText()).isEqualTo(DemoStack.shared().gatewayUrl() + "/");
    }
}
