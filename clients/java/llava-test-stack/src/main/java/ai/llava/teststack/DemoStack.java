package ai.llava.teststack;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.UncheckedIOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * The demo stack ({@code make demo}: supervisor, model process on the demo model, gunicorn gateway)
 * on free loopback ports, started once per JVM (one test module) by {@link #shared()}, with the
 * settings of the test classpath's {@code llava-stack.properties}.
 *
 * <p>It runs as {@code python -m harness.serve}, which prints the URLs once the model is ready and
 * stops the stack when its stdin closes: at JVM exit (a shutdown hook closes it and waits) or when
 * the JVM dies, since the pipe closes with it. So no stack outlives the tests, even a failed run.
 */
public final class DemoStack implements AutoCloseable {

    private static final Duration READY_TIMEOUT = Duration.ofMinutes(6);
    private static final Duration STOP_TIMEOUT = Duration.ofMinutes(2);
    private static final ObjectMapper JSON = new ObjectMapper();
    private static DemoStack shared;

    private final Process process;
    private final Path errors;
    private final JsonNode urls;
    private final HttpClient http = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).build();

    private DemoStack(Map<String, String> settings) {
        Path root = Repository.root();
        List<String> command = new ArrayList<>(List.of(Repository.python(root).toString(), "-m", "harness.serve"));
        settings.forEach((name, value) -> command.add(name + "=" + value));
        try {
            errors = Files.createTempFile("llava-stack-", ".err");
            process = new ProcessBuilder(command).directory(root.toFile())
                    .redirectError(errors.toFile()).start();
        } catch (IOException e) {
            throw new UncheckedIOException("could not start " + command, e);
        }
        Runtime.getRuntime().addShutdownHook(new Thread(this::close, "llava-demo-stack-stop"));
        urls = awaitUrls();
    }

    /** The stack of this JVM, started on first use with llava-stack.properties' settings. */
    public static synchronized DemoStack shared() {
        if (shared == null) {
            shared = new DemoStack(settings());
        }
        return shared;
    }

    /** The gateway, e.g. {@code http://127.0.0.1:41025} (no trailing slash). */
    public String gatewayUrl() {
        return urls.path("gateway").asText();
    }

    public String modelUrl() {
        return urls.path("model").asText();
    }

    public String supervisorUrl() {
        return urls.path("supervisor").asText();
    }

    /** The model process's own {@code GET /health}: {@code status}, {@code running}, {@code waiting}, ... */
    public JsonNode modelHealth() {
        return getJson(modelUrl() + "/health");
    }

    /** The supervisor's status: {@code state} (READY, STARTING, ...), {@code pid}, {@code restarts}. */
    public JsonNode supervisorStatus() {
        return getJson(supervisorUrl() + "/status");
    }

    /**
     * Kills the model process as a crash would (SIGKILL); the supervisor starts a new one. Only a
     * process of this stack is signalled: the supervisor's READY child, checked to descend from it.
     *
     * @return the pid killed
     */
    public long crashModel() {
        JsonNode status = supervisorStatus();
        if (!"READY".equals(status.path("state").asText())) {
            throw new IllegalStateException("the model is not READY: " + status);
        }
        long pid = status.path("pid").asLong();
        ProcessHandle model = process.descendants().filter(p -> p.pid() == pid).findFirst()
                .orElseThrow(() -> new IllegalStateException("pid " + pid + " is not a process of this stack"));
        model.destroyForcibly();
        return pid;
    }

    /** Until the supervisor runs a model other than {@code oldPid} and the gateway finds it ready. */
    public void awaitModelReady(long oldPid, Duration timeout) {
        long end = System.nanoTime() + timeout.toNanos();
        while (System.nanoTime() < end) {
            JsonNode status = supervisorStatus();
            if ("READY".equals(status.path("state").asText()) && status.path("pid").asLong() != oldPid
                    && "UP".equals(getJson(gatewayUrl() + "/health/model").path("status").asText())) {
                return;
            }
            pause(Duration.ofMillis(200));
        }
        throw new IllegalStateException("the model did not come back within " + timeout + ": " + supervisorStatus());
    }

    /**
     * Arms the model process's fault injection (the stack needs LLAVA_FAULTS=1): the next {@code count}
     * model steps take {@code seconds} more ({@code slow}), or fail ({@code error}).
     */
    public void fault(String mode, int count, double seconds) {
        String body = "{\"mode\": \"" + mode + "\", \"count\": " + count + ", \"seconds\": " + seconds + "}";
        send(HttpRequest.newBuilder(URI.create(modelUrl() + "/_faults")).header("Content-Type", "application/json")
                .POST(HttpRequest.BodyPublishers.ofString(body)));
    }

    private JsonNode getJson(String url) {
        return send(HttpRequest.newBuilder(URI.create(url)).GET());
    }

    private JsonNode send(HttpRequest.Builder request) {
        try {
            HttpResponse<byte[]> response = http.send(request.timeout(Duration.ofSeconds(10)).build(),
                    HttpResponse.BodyHandlers.ofByteArray());
            return JSON.readTree(response.body());
        } catch (IOException e) {
            return JSON.createObjectNode().put("error", e.toString());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted", e);
        }
    }

    private JsonNode awaitUrls() {
        CompletableFuture<String> line = CompletableFuture.supplyAsync(() -> firstLine(process.getInputStream()));
        try {
            String ready = line.get(READY_TIMEOUT.toSeconds(), TimeUnit.SECONDS);
            if (ready == null) {
                throw new IllegalStateException("the demo stack did not start:\n" + errorsTail());
            }
            return JSON.readTree(ready);
        } catch (TimeoutException e) {
            close();
            throw new IllegalStateException("the demo stack was not ready within " + READY_TIMEOUT + ":\n"
                    + errorsTail(), e);
        } catch (ExecutionException | IOException e) {
            close();
            throw new IllegalStateException("the demo stack did not start:\n" + errorsTail(), e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            close();
            throw new IllegalStateException("interrupted while the demo stack started", e);
        }
    }

    private static String firstLine(InputStream out) {
        try {
            return new BufferedReader(new InputStreamReader(out, StandardCharsets.UTF_8)).readLine();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    private String errorsTail() {
        try {
            String text = Files.readString(errors);
            return text.substring(Math.max(0, text.length() - 4000));
        } catch (IOException e) {
            return "(no output: " + e + ")";
        }
    }

    /** Closes the stack's stdin (it then stops itself) and waits; kills what is left past the timeout. */
    @Override
    public synchronized void close() {
        if (!process.isAlive()) {
            return;
        }
        try {
            process.getOutputStream().close();
            if (!process.waitFor(STOP_TIMEOUT.toSeconds(), TimeUnit.SECONDS)) {
                process.descendants().forEach(ProcessHandle::destroyForcibly);
                process.destroyForcibly();
            }
        } catch (IOException e) {
            process.destroy();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            process.destroyForcibly();
        }
    }

    private static Map<String, String> settings() {
        Properties properties = new Properties();
        try (InputStream in = DemoStack.class.getClassLoader().getResourceAsStream("llava-stack.properties")) {
            if (in != null) {
                properties.load(in);
            }
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read llava-stack.properties", e);
        }
        Map<String, String> settings = new TreeMap<>();
        properties.stringPropertyNames().forEach(name -> settings.put(name, properties.getProperty(name)));
        return settings;
    }

    static void pause(Duration duration) {
        try {
            Thread.sleep(duration.toMillis());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted", e);
        }
    }
}
