package ai.llava.spring;

import ai.llava.client.Image;
import ai.llava.client.LlavaClient;
import ai.llava.client.RetryPolicy;
import io.micrometer.observation.tck.TestObservationRegistry;
import io.micrometer.observation.tck.TestObservationRegistryAssert;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.springframework.boot.autoconfigure.AutoConfigurations;
import org.springframework.boot.test.context.FilteredClassLoader;
import org.springframework.boot.test.context.runner.ApplicationContextRunner;
import org.springframework.web.client.RestClient;

import java.io.IOException;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;

import static org.assertj.core.api.Assertions.assertThat;

class LlavaAutoConfigurationTest {

    static final byte[] JPEG = {(byte) 0xFF, (byte) 0xD8, (byte) 0xFF, (byte) 0xE0, 1, 2, 3};
    static final String ANSWER = "{\"status\":\"SUCCESS\",\"result\":\"a part\",\"requestId\":\"gw-7\",\"model\":\"m\","
            + "\"usage\":{\"promptTokens\":1,\"completionTokens\":2},\"latencyMs\":3,\"data\":null}";

    final GatewayStub gateway = gatewayStub();
    final ApplicationContextRunner runner = new ApplicationContextRunner()
            .withConfiguration(AutoConfigurations.of(LlavaAutoConfiguration.class, LlavaHealthAutoConfiguration.class))
            .withPropertyValues("llava.base-url=" + gateway.url() + "/v1", "llava.api-key=secret-1");

    static GatewayStub gatewayStub() {
        try {
            return new GatewayStub().answer("/api/v1/multimodal/analyze", 200, ANSWER);
        } catch (IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
    }

    @AfterEach
    void stop() {
        gateway.close();
    }

    @Test
    void the_client_calls_the_configured_gateway_with_the_key_through_the_applications_rest_client() {
        AtomicInteger intercepted = new AtomicInteger();
        runner.withBean(RestClient.Builder.class, () -> RestClient.builder().requestInterceptor((request, body, next) -> {
            intercepted.incrementAndGet();
            return next.execute(request, body);
        })).run(context -> {
            LlavaClient client = context.getBean(LlavaClient.class);
            assertThat(client.analyze(Image.of(JPEG), "What is it?").result()).isEqualTo("a part");
            assertThat(client.baseUrl()).hasToString(gateway.url() + "/");
        });
        assertThat(intercepted).hasValue(1);
        assertThat(gateway.headers.get(0).get("Authorization")).containsExactly("Bearer secret-1");
        assertThat(gateway.headers.get(0).get("X-request-id")).singleElement().asString().hasSize(32);
    }

    @Test
    void retries_follow_the_properties_and_customizers_come_last() {
        gateway.answer("/api/v1/multimodal/analyze", 503, "{\"status\":\"SERVICE_UNAVAILABLE\",\"result\":\"down\","
                + "\"requestId\":\"x\",\"model\":null,\"usage\":null,\"latencyMs\":0,\"data\":null}");
        runner.withPropertyValues("llava.retry.max-attempts=3", "llava.retry.initial-backoff=10ms",
                "llava.retry.max-backoff=20ms").run(context -> {
            LlavaClient client = context.getBean(LlavaClient.class);
            try {
                client.analyze(Image.of(JPEG), "?");
            } catch (ai.llava.client.ServiceUnavailableException expected) {
                assertThat(expected.getMessage()).isEqualTo("down");
            }
        });
        assertThat(gateway.paths).hasSize(3);

        gateway.paths.clear();
        runner.withBean(LlavaClientCustomizer.class, () -> builder -> builder.retry(RetryPolicy.none(Duration.ofSeconds(5))))
                .run(context -> {
                    try {
                        context.getBean(LlavaClient.class).analyze(Image.of(JPEG), "?");
                    } catch (ai.llava.client.ServiceUnavailableException expected) {
                        assertThat(expected.httpStatus()).isEqualTo(503);
                    }
                });
        assertThat(gateway.paths).hasSize(1);
    }

    @Test
    void each_call_is_one_observation_tagged_with_operation_and_status() {
        TestObservationRegistry registry = TestObservationRegistry.create();
        runner.withBean(io.micrometer.observation.ObservationRegistry.class, () -> registry).run(context ->
                context.getBean(LlavaClient.class).analyze(Image.of(JPEG), "What is it?"));
        TestObservationRegistryAssert.assertThat(registry).hasObservationWithNameEqualTo(MicrometerCallObserver.NAME)
                .that().hasBeenStopped()
                .hasLowCardinalityKeyValue(MicrometerCallObserver.OPERATION, "analyze")
                .hasLowCardinalityKeyValue(MicrometerCallObserver.STATUS, "SUCCESS")
                .hasHighCardinalityKeyValueWithKey(MicrometerCallObserver.REQUEST_ID);
    }

    @Test
    void the_health_indicator_fits_the_boot_line_on_the_classpath_and_can_be_turned_off() {
        runner.withClassLoader(new FilteredClassLoader("org.springframework.boot.health.")).run(context ->
                assertThat(context).getBean(LlavaHealthAutoConfiguration.BEAN).isInstanceOf(Boot3ModelHealthIndicator.class));
        runner.run(context ->
                assertThat(context).getBean(LlavaHealthAutoConfiguration.BEAN).isInstanceOf(Boot4ModelHealthIndicator.class));
        runner.withPropertyValues("management.health.llava.enabled=false").run(context ->
                assertThat(context).doesNotHaveBean(LlavaHealthAutoConfiguration.BEAN).hasSingleBean(LlavaClient.class));
        runner.withClassLoader(new FilteredClassLoader("org.springframework.boot.health.",
                "org.springframework.boot.actuate.")).run(context ->
                assertThat(context).doesNotHaveBean(LlavaHealthAutoConfiguration.BEAN).hasSingleBean(LlavaClient.class));
    }

    @Test
    void an_application_client_bean_wins() {
        LlavaClient own = LlavaClient.create("http://elsewhere:8080");
        runner.withBean(LlavaClient.class, () -> own).run(context ->
                assertThat(context.getBean(LlavaClient.class)).isSameAs(own));
    }

    @Test
    void configuration_metadata_describes_every_property() throws IOException {
        com.fasterxml.jackson.databind.JsonNode metadata = new com.fasterxml.jackson.databind.ObjectMapper().readTree(
                getClass().getResource("/META-INF/spring-configuration-metadata.json"));
        List<String> names = new java.util.ArrayList<>();
        metadata.path("properties").forEach(property -> {
            assertThat(property.path("description").asText()).as(property.path("name").asText()).isNotBlank();
            names.add(property.path("name").asText());
        });
        assertThat(names).contains("llava.base-url", "llava.api-key", "llava.connect-timeout", "llava.timeout",
                "llava.retry.max-attempts", "llava.retry.deadline", "llava.retry.initial-backoff",
                "llava.retry.max-backoff", "llava.health.timeout", "llava.health.cache-ttl",
                "llava.health.failure-threshold", "management.health.llava.enabled");
    }
}
