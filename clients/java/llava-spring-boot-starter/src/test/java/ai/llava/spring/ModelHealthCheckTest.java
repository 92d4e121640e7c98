package ai.llava.spring;

import ai.llava.client.LlavaClient;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.time.Duration;

import static org.assertj.core.api.Assertions.assertThat;

class ModelHealthCheckTest {

    static final String READY = "{\"status\":\"UP\",\"details\":{\"state\":\"ready\",\"reason\":null,\"model\":\"llava-demo\","
            + "\"phase\":null,\"detail\":null,\"bars\":[],\"elapsedSeconds\":null,\"replicas\":{\"ready\":1,\"total\":1}}}";
    static final String LOADING = "{\"status\":\"DOWN\",\"details\":{\"state\":\"loading\",\"reason\":\"loading\","
            + "\"model\":\"llava-demo\",\"phase\":\"weights\",\"detail\":\"3/7\",\"elapsedSeconds\":12.5,"
            + "\"replicas\":{\"ready\":0,\"total\":1}}}";

    final GatewayStub gateway;
    long now;
    final LlavaProperties.Health settings = new LlavaProperties.Health();

    ModelHealthCheckTest() throws IOException {
        gateway = new GatewayStub();
    }

    @AfterEach
    void stop() {
        gateway.close();
    }

    ModelHealthCheck check() {
        return new ModelHealthCheck(LlavaClient.create(gateway.url()), settings, () -> now);
    }

    @Test
    void ready_is_up_and_loading_is_out_of_service_with_its_progress() {
        ModelHealthCheck check = check();
        gateway.answer("/health/model", 200, READY);
        assertThat(check.view().status()).isEqualTo(ModelHealthCheck.UP);
        assertThat(check.view().details()).containsEntry("state", "ready").containsEntry("model", "llava-demo")
                .containsEntry("replicasReady", 1);

        now += settings.getCacheTtl().toNanos();
        gateway.answer("/health/model", 200, LOADING);
        ModelHealthCheck.View loading = check.view();
        assertThat(loading.status()).isEqualTo(ModelHealthCheck.OUT_OF_SERVICE);
        assertThat(loading.details()).containsEntry("state", "loading").containsEntry("phase", "weights")
                .containsEntry("elapsedSeconds", 12.5);
    }

    @Test
    void a_look_is_reused_within_the_cache_ttl() {
        gateway.answer("/health/model", 200, READY);
        ModelHealthCheck check = check();
        for (int i = 0; i < 5; i++) {
            check.view();
            now += settings.getCacheTtl().toNanos() / 10;
        }
        assertThat(gateway.paths).hasSize(1);
        now += settings.getCacheTtl().toNanos();
        check.view();
        assertThat(gateway.paths).hasSize(2);
    }

    @Test
    void failed_looks_keep_the_last_state_until_the_threshold() {
        settings.setTimeout(Duration.ofMillis(500));
        gateway.answer("/health/model", 200, READY);
        ModelHealthCheck check = check();
        assertThat(check.view().status()).isEqualTo(ModelHealthCheck.UP);
        gateway.answer("/health/model", 500, "{\"status\":\"INTERNAL_ERROR\",\"result\":\"bug\"}");
        for (int failure = 1; failure < settings.getFailureThreshold(); failure++) {
            now += settings.getCacheTtl().toNanos();
            ModelHealthCheck.View held = check.view();
            assertThat(held.status()).isEqualTo(ModelHealthCheck.UP);
            assertThat(held.details()).containsEntry("failedLooks", failure)
                    .hasEntrySatisfying("error", error -> assertThat(error).asString().startsWith("SERVER_ERROR"));
        }
        now += settings.getCacheTtl().toNanos();
        assertThat(check.view().status()).isEqualTo(ModelHealthCheck.DOWN);
        gateway.answer("/health/model", 200, READY);
        now += settings.getCacheTtl().toNanos();
        assertThat(check.view().status()).isEqualTo(ModelHealthCheck.UP);
    }

    @Test
    void a_gateway_never_reached_is_down_at_once() throws IOException {
        gateway.close();
        ModelHealthCheck.View view = check().view();
        assertThat(view.status()).isEqualTo(ModelHealthCheck.DOWN);
        assertThat(view.details()).hasEntrySatisfying("error",
                error -> assertThat(error).asString().startsWith("CONNECTION_ERROR"));
    }
}
