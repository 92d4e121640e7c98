package ai.llava.client;

import com.fasterxml.jackson.databind.JsonNode;

/**
 * The model's state as the gateway sees it ({@code GET /health/model}).
 *
 * @param status  {@code UP} or {@code DOWN}
 * @param state   {@code ready}, {@code loading}, {@code starting} or {@code restarting}
 * @param details everything the gateway reported (reason, model, phase, progress bars, replicas)
 */
public record ModelHealth(String status, String state, JsonNode details) {

    public boolean ready() {
        return "UP".equals(status);
    }
}
