package ai.llava.spring;

import ai.llava.client.LlavaClient;
import ai.llava.client.LlavaException;
import ai.llava.client.ModelHealth;

import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.function.LongSupplier;

/**
 * The model's state for a health indicator, from the gateway's {@code GET /health/model}: UP when
 * ready, OUT_OF_SERVICE while it loads, starts or restarts, DOWN when the gateway cannot be asked.
 *
 * <p>It does not flap: a look is reused for {@code cacheTtl} (a health endpoint polled every second
 * asks the gateway at most that often, and never waits longer than {@code timeout}), and a failed
 * look keeps the last state seen until {@code failureThreshold} fail in a row. Written once for both
 * Boot lines; each has a thin adapter to its own HealthIndicator type.
 */
public final class ModelHealthCheck {

    /** A state and what to show with it. */
    public record View(String status, Map<String, Object> details) {
    }

    public static final String UP = "UP";
    public static final String OUT_OF_SERVICE = "OUT_OF_SERVICE";
    public static final String DOWN = "DOWN";

    private final LlavaClient client;
    private final Duration timeout;
    private final long cacheTtlNanos;
    private final int failureThreshold;
    private final LongSupplier nanoTime;
    private View last;
    private long lastLookNanos;
    private int failures;

    public ModelHealthCheck(LlavaClient client, LlavaProperties.Health settings) {
        this(client, settings, System::nanoTime);
    }

    ModelHealthCheck(LlavaClient client, LlavaProperties.Health settings, LongSupplier nanoTime) {
        this.client = client;
        this.timeout = settings.getTimeout();
        this.cacheTtlNanos = settings.getCacheTtl().toNanos();
        this.failureThreshold = Math.max(1, settings.getFailureThreshold());
        this.nanoTime = nanoTime;
    }

    public synchronized View view() {
        long now = nanoTime.getAsLong();
        if (last != null && now - lastLookNanos < cacheTtlNanos) {
            return last;
        }
        lastLookNanos = now;
        try {
            ModelHealth health = client.modelHealth(timeout);
            failures = 0;
            last = new View(health.ready() ? UP : OUT_OF_SERVICE, details(health));
        } catch (LlavaException e) {
            failures++;
            Map<String, Object> details = new LinkedHashMap<>();
            details.put("gateway", client.baseUrl().toString());
            details.put("error", e.kind() + ": " + e.getMessage());
            details.put("failedLooks", failures);
            if (last != null && failures < failureThreshold) {
                Map<String, Object> held = new LinkedHashMap<>(last.details());
                held.putAll(details);
                last = new View(last.status(), held);
            } else {
                last = new View(DOWN, details);
            }
        }
        return last;
    }

    private Map<String, Object> details(ModelHealth health) {
        Map<String, Object> details = new LinkedHashMap<>();
        details.put("gateway", client.baseUrl().toString());
        details.put("state", health.state());
        for (String field : new String[] {"model", "reason", "phase", "detail", "elapsedSeconds"}) {
            if (health.details().hasNonNull(field)) {
                details.put(field, health.details().get(field).isNumber() ? health.details().get(field).numberValue()
                        : health.details().get(field).asText());
            }
        }
        if (health.details().path("replicas").isObject()) {
            details.put("replicasReady", health.details().path("replicas").path("ready").asInt());
            details.put("replicas", health.details().path("replicas").path("total").asInt());
        }
        return details;
    }
}
