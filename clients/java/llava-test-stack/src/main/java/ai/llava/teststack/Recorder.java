package ai.llava.teststack;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;

/**
 * What a client library really sends, taken with the project's recorder (tests/recorded/record.py):
 * the library is pointed at it, makes one call, and the request it sent is compared with
 * tests/recorded/NAME.json, which the Python suite replays against the gateway. A library that
 * changed what it sends fails here first. With {@code -Dllava.record=true} the file is written
 * instead (then run the Python suite: its replays must still pass).
 */
public final class Recorder {

    private static final ObjectMapper JSON = new ObjectMapper();

    private Recorder() {
    }

    /**
     * Runs {@code call} against the recorder (it gets the recorder's base URL, {@code http://127.0.0.1:PORT},
     * to which the library adds its paths) and returns the request it recorded.
     *
     * @param client what made the call (kept in the file)
     */
    public static JsonNode record(String name, String client, Consumer<String> call) {
        Path root = Repository.root();
        Path committed = root.resolve("tests/recorded/" + name + ".json");
        boolean recording = Boolean.getBoolean("llava.record");
        try {
            Path out = recording ? committed.getParent() : Files.createTempDirectory("llava-recorded-");
            Process recorder = new ProcessBuilder(List.of(Repository.python(root).toString(),
                    "tests/recorded/record.py", "0", name, "--client", client, "--out", out.toString()))
                    .directory(root.toFile()).redirectError(ProcessBuilder.Redirect.DISCARD).start();
            try {
                String listening = new BufferedReader(new InputStreamReader(recorder.getInputStream(),
                        StandardCharsets.UTF_8)).readLine();
                if (listening == null || !listening.startsWith("listening on ")) {
                    throw new IllegalStateException("the recorder did not start: " + listening);
                }
                call.accept("http://127.0.0.1:" + listening.substring("listening on ".length()).strip());
                if (!recorder.waitFor(30, TimeUnit.SECONDS)) {
                    throw new IllegalStateException(client + " sent nothing to the recorder");
                }
            } finally {
                recorder.destroyForcibly();
            }
            JsonNode sent = JSON.readTree(out.resolve(name + ".json").toFile());
            if (!recording) {
                compare(name, committed, sent);
            }
            return sent;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted", e);
        }
    }

    private static void compare(String name, Path committed, JsonNode sent) throws IOException {
        if (!Files.exists(committed)) {
            throw new AssertionError(committed + " does not exist: record it with mvn verify -Dllava.record=true");
        }
        JsonNode expected = JSON.readTree(committed.toFile());
        if (!expected.path("path").equals(sent.path("path")) || !expected.path("body").equals(sent.path("body"))) {
            throw new AssertionError(name + ": the library now sends something else than tests/recorded/" + name
                    + ".json (re-record with mvn verify -Dllava.record=true, then run the Python suite)\nrecorded: "
                    + expected.path("path") + " " + expected.path("body") + "\nsent now: " + sent.path("path") + " "
                    + sent.path("body"));
        }
    }
}
