package ai.llava.it;

import ai.llava.client.Analysis;
import ai.llava.client.AnalyzeRequest;
import ai.llava.client.AnswerStatus;
import ai.llava.client.AuthenticationException;
import ai.llava.client.ChatCompletion;
import ai.llava.client.ChatDelta;
import ai.llava.client.ChatRequest;
import ai.llava.client.Image;
import ai.llava.client.LlavaClient;
import ai.llava.client.NotFoundException;
import ai.llava.client.OverloadedException;
import ai.llava.client.Preset;
import ai.llava.client.PresetInfo;
import ai.llava.client.RetryPolicy;
import ai.llava.client.ValidationException;
import ai.llava.it.shared.Photos;
import ai.llava.it.shared.QcReport;
import ai.llava.it.shared.RecordingTransport;
import ai.llava.it.shared.Verdict;
import ai.llava.teststack.DemoStack;
import com.fasterxml.jackson.databind.JsonNode;
import com.sun.net.httpserver.HttpServer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.URI;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.stream.Collectors;
import java.util.stream.Stream;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** llava-client on the JDK HttpClient, against the demo stack: every call a user makes, and its refusals. */
class PlainClientIT {

    static final DemoStack STACK = DemoStack.shared();
    static final byte[] PHOTO = Photos.jpeg(320, 240);

    final LlavaClient llava = LlavaClient.builder().baseUrl(STACK.gatewayUrl()).apiKey("it-key").build();

    @Test
    void free_text_about_bytes_a_file_and_a_url(@TempDir Path dir) throws IOException {
        Analysis<JsonNode> answer = llava.analyze(AnalyzeRequest.builder(Image.of(PHOTO)).prompt("What is it?")
                .maxTokens(8).requestId("it-plain-1").build());
        assertThat(answer.status()).isEqualTo(AnswerStatus.SUCCESS);
        assertThat(answer.result()).isNotBlank();
        assertThat(answer.requestId()).as("the gateway's own id; ours is kept beside it").matches("[0-9a-f]{32}");
        assertThat(answer.model()).isEqualTo("llava-demo");
        assertThat(answer.usage().completionTokens()).isBetween(1, 8);
        assertThat(answer.usage().promptTokens()).as("the image's tokens").isGreaterThan(500);

        Path file = Files.write(dir.resolve("part.jpg"), PHOTO);
        assertThat(llava.analyze(Image.of(file), "What is it? (a file)").result()).isNotBlank();

        HttpServer shop = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
        shop.createContext("/part.jpg", exchange -> {
            exchange.sendResponseHeaders(200, PHOTO.length);
            exchange.getResponseBody().write(PHOTO);
            exchange.close();
        });
        shop.start();
        try {
            URI url = URI.create("http://127.0.0.1:" + shop.getAddress().getPort() + "/part.jpg");
            assertThat(llava.analyze(Image.of(url), "What is it? (a URL)").result()).isNotBlank();
        } finally {
            shop.stop(0);
        }
    }

    @Test
    void a_preset_maps_to_a_record_that_follows_its_schema() {
        PresetInfo qc = llava.presets().stream().filter(p -> p.preset().equals(Preset.QC_INSPECTION)).findFirst()
                .orElseThrow();
        List<String> kinds = new ArrayList<>();
        qc.schema().path("properties").path("defects").path("items").path("properties").path("kind").path("enum")
                .forEach(kind -> kinds.add(kind.asText()));
        assertThat(kinds).contains("scratch");

        Analysis<QcReport> answer = llava.analyze(Image.of(PHOTO), Preset.QC_INSPECTION, QcReport.class);
        assertThat(answer.data().verdict()).isIn("pass", "fail");
        assertThat(answer.data().defects()).allSatisfy(defect -> assertThat(defect.kind()).isIn(kinds));
        assertThat(answer.result()).startsWith("{");
    }

    @Test
    void a_schema_of_ones_own_maps_to_a_record() {
        Analysis<Verdict> answer = llava.analyze(AnalyzeRequest.builder(Image.of(PHOTO)).prompt("Inspect this part.")
                .schema(Verdict.SCHEMA).build(), Verdict.class);
        assertThat(answer.data().verdict()).isNotNull();
        assertThat(answer.data().severity()).isNotNull();
    }

    @Test
    void a_chat_and_its_stream_give_the_same_greedy_answer() {
        ChatRequest request = ChatRequest.builder().system("Answer briefly.").user("What is in this picture?",
                Image.of(PHOTO)).maxTokens(12).temperature(0).build();
        ChatCompletion completion = llava.chat(request);
        assertThat(completion.content()).isNotBlank();
        assertThat(completion.finishReason()).isIn("stop", "length");
        assertThat(completion.usage().promptTokens()).isGreaterThan(500);

        List<ChatDelta> deltas;
        try (Stream<ChatDelta> stream = llava.chatStream(request)) {
            deltas = stream.collect(Collectors.toList());
        }
        assertThat(deltas.stream().map(ChatDelta::content).collect(Collectors.joining())).isEqualTo(completion.content());
        assertThat(deltas.get(deltas.size() - 1).usage().completionTokens())
                .isEqualTo(completion.usage().completionTokens());
        assertThat(llava.models()).contains("llava-demo");
    }

    @Test
    void a_chat_with_a_schema_maps_to_a_record() {
        Verdict verdict = llava.chat(ChatRequest.builder().user("Inspect this part.", Image.of(PHOTO))
                .jsonSchema("verdict", Verdict.SCHEMA).maxTokens(100).build(), Verdict.class);
        assertThat(verdict.verdict()).isNotNull();
    }

    @Test
    void refusals_are_typed_and_say_what_is_wrong() {
        LlavaClient wrongKey = LlavaClient.builder().baseUrl(STACK.gatewayUrl()).apiKey("not-the-key").build();
        assertThatThrownBy(() -> wrongKey.analyze(Image.of(PHOTO), "?"))
                .isInstanceOfSatisfying(AuthenticationException.class, e -> assertThat(e.httpStatus()).isEqualTo(401));

        assertThatThrownBy(() -> llava.analyze(AnalyzeRequest.builder(Image.of(PHOTO)).prompt("?").maxTokens(5000)
                .build())).isInstanceOfSatisfying(ValidationException.class, e -> {
                    assertThat(e.field()).isEqualTo("max-tokens");
                    assertThat(e.httpStatus()).isEqualTo(400);
                    assertThat(e.getMessage()).contains("1024");
                });
        assertThatThrownBy(() -> llava.analyze(Image.of("not an image".getBytes()), "?"))
                .isInstanceOfSatisfying(ValidationException.class, e -> assertThat(e.httpStatus()).isEqualTo(415));
        assertThatThrownBy(() -> llava.chat(ChatRequest.builder().user("?", Image.of("GIF89a-broken".getBytes()))
                .build())).isInstanceOfSatisfying(ValidationException.class,
                        e -> assertThat(e.field()).startsWith("messages[0].content[1]"));
        assertThatThrownBy(() -> llava.chat(ChatRequest.builder().model("no-such-model").user("?").build()))
                .isInstanceOf(NotFoundException.class).hasMessageContaining("llava-demo");
    }

    /**
     * The stack has one model call slot and no waiting line: while a call holds it (the model's slow
     * fault), another is refused 429 with Retry-After. A client without retries sees that; the default
     * client waits Retry-After and gets its answer once the slot is free.
     */
    @Test
    void overloaded_is_retried_after_retry_after() throws Exception {
        STACK.fault("slow", 1, 6);
        CompletableFuture<Analysis<JsonNode>> holder = CompletableFuture.supplyAsync(() ->
                llava.analyze(AnalyzeRequest.builder(Image.of(PHOTO)).prompt("Hold the slot.").maxTokens(4).build()));
        long end = System.nanoTime() + Duration.ofSeconds(20).toNanos();
        while (STACK.modelHealth().path("running").asInt() + STACK.modelHealth().path("waiting").asInt() < 1
                && System.nanoTime() < end) {
            Thread.sleep(50);
        }

        LlavaClient once = LlavaClient.builder().baseUrl(STACK.gatewayUrl()).apiKey("it-key")
                .retry(RetryPolicy.none(Duration.ofSeconds(30))).build();
        assertThatThrownBy(() -> once.analyze(Image.of(PHOTO), "Refused?"))
                .isInstanceOfSatisfying(OverloadedException.class, e -> {
                    assertThat(e.retryAfter()).hasValueSatisfying(wait -> assertThat(wait).isPositive());
                    assertThat(e.code()).isEqualTo("OVERLOADED");
                });

        RecordingTransport transport = new RecordingTransport();
        LlavaClient patient = LlavaClient.builder().baseUrl(STACK.gatewayUrl()).apiKey("it-key").transport(transport)
                .retry(new RetryPolicy(10, Duration.ofMinutes(1), Duration.ofMillis(500), Duration.ofSeconds(5)))
                .build();
        Analysis<JsonNode> answer = patient.analyze(AnalyzeRequest.builder(Image.of(PHOTO)).prompt("Waited my turn.")
                .maxTokens(4).build());

        assertThat(answer.status()).isEqualTo(AnswerStatus.SUCCESS);
        assertThat(holder.get().status()).isEqualTo(AnswerStatus.SUCCESS);
        List<RecordingTransport.Attempt> attempts = transport.attempts;
        assertThat(attempts.get(0).status()).isEqualTo(429);
        assertThat(attempts.get(attempts.size() - 1).status()).isEqualTo(200);
        for (int i = 0; i + 1 < attempts.size(); i++) {
            long waited = attempts.get(i + 1).startedNanos() - attempts.get(i).startedNanos();
            assertThat(Duration.ofNanos(waited)).as("the wait after attempt %d", i + 1)
                    .isGreaterThanOrEqualTo(Duration.ofSeconds(Long.parseLong(attempts.get(i).retryAfter())));
        }
    }
}
