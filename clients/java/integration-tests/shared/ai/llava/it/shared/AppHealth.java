package ai.llava.it.shared;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.LinkedHashSet;
import java.util.Set;

import static org.assertj.core.api.Assertions.assertThat;

/** An application's /actuator/health, read over HTTP as a probe or a monitor reads it. */
public final class AppHealth {

    private final HttpClient http = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).build();
    private final String base;

    public AppHealth(int port) {
        this.base = "http://127.0.0.1:" + port + "/actuator/health";
    }

    public JsonNode get(String path) {
        try {
            HttpResponse<byte[]> response = http.send(HttpRequest.newBuilder(URI.create(base + path))
                    .timeout(Duration.ofSeconds(10)).build(), HttpResponse.BodyHandlers.ofByteArray());
            return new ObjectMapper().readTree(response.body());
        } catch (IOException e) {
            throw new AssertionError("GET " + base + path + " failed", e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new AssertionError("interrupted", e);
        }
    }

    /**
     * Reads the "llava" component until it went OUT_OF_SERVICE and came back UP (the model process was
     * restarted), checking at every look that liveness and readiness stay UP. The states seen, in order
     * ("UP back" for the return).
     */
    public Set<String> throughRestart(Duration timeout) throws InterruptedException {
        Set<String> seen = new LinkedHashSet<>();
        long end = System.nanoTime() + timeout.toNanos();
        while (System.nanoTime() < end && !(seen.contains("OUT_OF_SERVICE") && seen.contains("UP back"))) {
            String status = get("/llava").path("status").asText();
            seen.add(status.equals("UP") && seen.contains("OUT_OF_SERVICE") ? "UP back" : status);
            assertThat(get("/liveness").path("status").asText()).isEqualTo("UP");
            assertThat(get("/readiness").path("status").asText()).isEqualTo("UP");
            Thread.sleep(100);
        }
        return seen;
    }
}
