package ai.llava.client;

import ai.llava.client.FakeGateway.Answer;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.net.URI;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Collectors;
import java.util.stream.Stream;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class LlavaClientTest {

    static final byte[] JPEG = {(byte) 0xFF, (byte) 0xD8, (byte) 0xFF, (byte) 0xE0, 1, 2, 3, 4};
    static final String QC_ANSWER = "{\"status\":\"SUCCESS\",\"result\":\"{}\",\"requestId\":\"r-1\",\"model\":\"llava-demo\","
            + "\"usage\":{\"promptTokens\":10,\"completionTokens\":5},\"latencyMs\":42,"
            + "\"data\":{\"verdict\":\"fail\",\"defects\":[{\"kind\":\"scratch\",\"location\":\"top edge\"}]}}";

    record Defect(String kind, String location) {
    }

    record QcReport(String verdict, List<Defect> defects) {
    }

    FakeGateway gateway;
    FakeTiming timing = new FakeTiming();
    List<String> observed = new ArrayList<>();

    @BeforeEach
    void start() throws IOException {
        gateway = new FakeGateway();
    }

    @AfterEach
    void stop() {
        gateway.close();
    }

    LlavaClient client() {
        return LlavaClient.builder().baseUrl(gateway.url() + "/v1").apiKey("k-1").timing(timing)
                .observer(operation -> new CallObserver.Call() {
                    @Override
                    public void requestId(String requestId) {
                    }

                    @Override
                    public void end(String status, Throwable error) {
                        observed.add(operation + ":" + status);
                    }
                }).build();
    }

    @Test
    void a_preset_answer_maps_to_the_callers_record() {
        gateway.then(Answer.json(200, QC_ANSWER));
        Analysis<QcReport> answer = client().analyze(Image.of(JPEG), Preset.QC_INSPECTION, QcReport.class);

        assertThat(answer.data()).isEqualTo(new QcReport("fail", List.of(new Defect("scratch", "top edge"))));
        assertThat(answer.status()).isEqualTo(AnswerStatus.SUCCESS);
        assertThat(answer.usage()).isEqualTo(new Usage(10, 5));
        FakeGateway.Request sent = gateway.last();
        assertThat(sent.path()).isEqualTo("/api/v1/multimodal/analyze");
        assertThat(sent.headers().getFirst("Content-Type")).startsWith("multipart/form-data; boundary=");
        assertThat(sent.headers().getFirst("Authorization")).isEqualTo("Bearer k-1");
        assertThat(sent.headers().getFirst("Accept")).startsWith("application/problem+json");
        assertThat(sent.text()).contains("name=\"preset\"\r\n\r\nqc-inspection\r\n")
                .contains("name=\"image\"; filename=\"image\"\r\nContent-Type: image/jpeg\r\n")
                .doesNotContain("name=\"prompt\"");
        assertThat(observed).containsExactly("analyze:SUCCESS");
    }

    @Test
    void a_file_image_and_the_generation_parameters_go_as_form_fields(@TempDir Path dir) throws IOException {
        Path photo = Files.write(dir.resolve("part 1.jpg"), JPEG);
        gateway.then(Answer.json(200, "{\"status\":\"CACHED\",\"result\":\"a part\",\"requestId\":\"mine\","
                + "\"model\":\"m\",\"usage\":null,\"latencyMs\":1,\"data\":null}"));
        Analysis<JsonNode> answer = client().analyze(AnalyzeRequest.builder(Image.of(photo)).prompt("What is it?")
                .maxTokens(16).temperature(0).requestId("mine").build());

        assertThat(answer.result()).isEqualTo("a part");
        assertThat(answer.status()).isEqualTo(AnswerStatus.CACHED);
        assertThat(answer.data()).isNull();
        assertThat(gateway.last().headers().getFirst("X-Request-ID")).isEqualTo("mine");
        assertThat(gateway.last().text()).contains("filename=\"part 1.jpg\"")
                .contains("name=\"prompt\"\r\n\r\nWhat is it?\r\n").contains("name=\"max-tokens\"\r\n\r\n16\r\n")
                .contains("name=\"temperature\"\r\n\r\n0.0\r\n");
    }

    @Test
    void a_url_image_is_downloaded_without_the_api_key() throws IOException {
        try (FakeGateway images = new FakeGateway()) {
            images.then(new Answer(200, java.util.Map.of("Content-Type", "image/jpeg"),
                    List.of(new String(JPEG, java.nio.charset.StandardCharsets.ISO_8859_1)), 0));
            gateway.then(Answer.json(200, QC_ANSWER));
            client().analyze(Image.of(URI.create(images.url() + "/shop/part.jpg")), "What is it?");

            assertThat(images.last().path()).isEqualTo("/shop/part.jpg");
            assertThat(images.last().headers().containsKey("Authorization")).isFalse();
            assertThat(gateway.last().text()).contains("filename=\"part.jpg\"");
        }
    }

    @Test
    void a_free_text_fallback_is_returned_but_a_structured_one_is_retried_then_thrown() {
        String fallback = "{\"status\":\"FALLBACK\",\"result\":\"Try again soon\",\"requestId\":\"r\",\"model\":null,"
                + "\"usage\":null,\"latencyMs\":1,\"data\":null}";
        gateway.then(Answer.json(200, fallback));
        assertThat(client().analyze(Image.of(JPEG), "What is it?").fallback()).isTrue();

        for (int i = 0; i < RetryPolicy.DEFAULT.maxAttempts(); i++) {
            gateway.then(Answer.json(200, fallback));
        }
        assertThatThrownBy(() -> client().analyze(Image.of(JPEG), Preset.QC_INSPECTION, QcReport.class))
                .isInstanceOfSatisfying(ServiceUnavailableException.class, e -> {
                    assertThat(e.getMessage()).isEqualTo("Try again soon");
                    assertThat(e.code()).isEqualTo("FALLBACK");
                });
        assertThat(gateway.requests).hasSize(1 + RetryPolicy.DEFAULT.maxAttempts());
        assertThat(timing.sleeps).hasSize(RetryPolicy.DEFAULT.maxAttempts() - 1);
        assertThat(observed).containsExactly("analyze:FALLBACK", "analyze:SERVICE_UNAVAILABLE");
    }

    @Test
    void an_answer_cut_at_max_tokens_has_no_data_to_map() {
        gateway.then(Answer.json(200, QC_ANSWER.replaceAll("\"data\":.*}$", "\"data\":null}")));
        assertThatThrownBy(() -> client().analyze(AnalyzeRequest.builder(Image.of(JPEG)).preset(Preset.QC_INSPECTION)
                .maxTokens(4).build(), QcReport.class))
                .isInstanceOf(TruncatedAnswerException.class).hasMessageContaining("max-tokens");
    }

    @Test
    void a_validation_error_names_the_field_and_is_not_retried() {
        gateway.then(Answer.json(400, "{\"type\":\"about:blank\",\"title\":\"Bad Request\",\"status\":400,"
                + "\"detail\":\"max-tokens must be at most 1024\",\"instance\":\"/api/v1/multimodal/analyze\","
                + "\"code\":\"VALIDATION_ERROR\",\"requestId\":\"r-9\",\"param\":\"max-tokens\"}",
                "Content-Type", "application/problem+json"));
        assertThatThrownBy(() -> client().analyze(AnalyzeRequest.builder(Image.of(JPEG)).prompt("?").maxTokens(5000)
                .build()))
                .isInstanceOfSatisfying(ValidationException.class, e -> {
                    assertThat(e.field()).isEqualTo("max-tokens");
                    assertThat(e.httpStatus()).isEqualTo(400);
                    assertThat(e.requestId()).isEqualTo("r-9");
                    assertThat(e.getMessage()).isEqualTo("max-tokens must be at most 1024");
                });
        assertThat(gateway.requests).hasSize(1);
        assertThat(timing.sleeps).isEmpty();
    }

    @Test
    void overloaded_waits_retry_after_then_succeeds_with_the_same_request_id() {
        gateway.then(Answer.json(429, "{\"status\":\"OVERLOADED\",\"result\":\"busy; retry in 3 s\",\"requestId\":\"x\","
                + "\"model\":null,\"usage\":null,\"latencyMs\":0,\"data\":null}", "Retry-After", "3"))
                .then(Answer.json(200, QC_ANSWER));
        Analysis<QcReport> answer = client().analyze(Image.of(JPEG), Preset.QC_INSPECTION, QcReport.class);

        assertThat(answer.data().verdict()).isEqualTo("fail");
        assertThat(timing.sleeps).hasSize(1);
        assertThat(timing.sleeps.get(0)).isBetween(Duration.ofSeconds(3), Duration.ofMillis(3300));
        assertThat(gateway.requests.get(0).headers().getFirst("X-Request-ID"))
                .isEqualTo(gateway.requests.get(1).headers().getFirst("X-Request-ID"));
        assertThat(observed).containsExactly("analyze:SUCCESS");
    }

    @Test
    void chat_sends_the_image_as_a_data_url_and_reads_the_completion() throws IOException {
        gateway.then(Answer.json(200, "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"model\":\"llava-demo\","
                + "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"a cat\"},"
                + "\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":2,"
                + "\"total_tokens\":9}}", "X-Request-ID", "chat-1", "X-Gateway-Status", "CACHED"));
        ChatCompletion completion = client().chat(ChatRequest.builder().system("Be brief.")
                .user("What is it?", Image.of(JPEG)).maxTokens(8).temperature(0).seed(7).build());

        assertThat(completion.content()).isEqualTo("a cat");
        assertThat(completion.finishReason()).isEqualTo("stop");
        assertThat(completion.usage()).isEqualTo(new Usage(7, 2));
        assertThat(completion.requestId()).isEqualTo("chat-1");
        assertThat(completion.gatewayStatus()).isEqualTo("CACHED");
        assertThat(gateway.last().path()).isEqualTo("/v1/chat/completions");
        JsonNode body = new ObjectMapper().readTree(gateway.last().body());
        assertThat(body.path("messages").path(0).path("content").asText()).isEqualTo("Be brief.");
        JsonNode parts = body.path("messages").path(1).path("content");
        assertThat(parts.path(0).path("text").asText()).isEqualTo("What is it?");
        assertThat(parts.path(1).path("image_url").path("url").asText())
                .isEqualTo("data:image/jpeg;base64," + java.util.Base64.getEncoder().encodeToString(JPEG));
        assertThat(body.path("max_tokens").asInt()).isEqualTo(8);
        assertThat(body.path("seed").asLong()).isEqualTo(7);
        assertThat(body.has("stream")).isFalse();
    }

    @Test
    void a_chat_with_a_schema_maps_its_json_content() throws IOException {
        gateway.then(Answer.json(200, "{\"id\":\"c\",\"model\":\"m\",\"choices\":[{\"index\":0,\"message\":"
                + "{\"role\":\"assistant\",\"content\":\"{\\\"verdict\\\":\\\"pass\\\",\\\"defects\\\":[]}\"},"
                + "\"finish_reason\":\"stop\"}]}"));
        QcReport report = client().chat(ChatRequest.builder().user("Inspect it.", Image.of(JPEG))
                .jsonSchema("qc", "{\"type\":\"object\"}").build(), QcReport.class);

        assertThat(report).isEqualTo(new QcReport("pass", List.of()));
        JsonNode format = new ObjectMapper().readTree(gateway.last().body()).path("response_format");
        assertThat(format.path("type").asText()).isEqualTo("json_schema");
        assertThat(format.path("json_schema").path("schema").path("type").asText()).isEqualTo("object");
    }

    @Test
    void a_stream_yields_deltas_then_the_usage() throws IOException {
        gateway.then(Answer.events(
                "{\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\"},\"finish_reason\":null}]}",
                "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a \"},\"finish_reason\":null}]}",
                "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"cat\"},\"finish_reason\":null}]}",
                "{\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}",
                "{\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":2}}",
                "[DONE]"));
        List<ChatDelta> deltas;
        try (Stream<ChatDelta> stream = client().chatStream(ChatRequest.builder().user("What?", Image.of(JPEG)).build())) {
            deltas = stream.collect(Collectors.toList());
        }
        assertThat(deltas).extracting(ChatDelta::content).containsExactly("a ", "cat", "", "");
        assertThat(deltas.get(2).finishReason()).isEqualTo("stop");
        assertThat(deltas.get(3).usage()).isEqualTo(new Usage(7, 2));
        JsonNode body = new ObjectMapper().readTree(gateway.last().body());
        assertThat(body.path("stream").asBoolean()).isTrue();
        assertThat(body.path("stream_options").path("include_usage").asBoolean()).isTrue();
        assertThat(gateway.last().headers().getFirst("Accept")).isEqualTo("text/event-stream");
        assertThat(observed).containsExactly("chat-stream:SUCCESS");
    }

    @Test
    void an_error_event_mid_stream_ends_it_with_the_mapped_exception() {
        gateway.then(Answer.events(
                "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a \"},\"finish_reason\":null}]}",
                "{\"error\":{\"message\":\"the model failed\",\"type\":\"service_unavailable\",\"param\":null,"
                        + "\"code\":\"model_unavailable\"}}",
                "[DONE]"));
        List<String> seen = new ArrayList<>();
        try (Stream<ChatDelta> stream = client().chatStream(ChatRequest.builder().user("What?").build())) {
            assertThatThrownBy(() -> stream.forEach(delta -> seen.add(delta.content())))
                    .isInstanceOf(ServiceUnavailableException.class).hasMessageContaining("the model failed");
        }
        assertThat(seen).containsExactly("a ");
        assertThat(observed).containsExactly("chat-stream:SERVICE_UNAVAILABLE");
    }

    @Test
    void a_stream_refused_before_its_first_event_is_retried() {
        gateway.then(Answer.json(503, "{\"error\":{\"message\":\"the model is loading\",\"type\":\"service_unavailable\","
                        + "\"param\":null,\"code\":\"model_unavailable\"}}", "Retry-After", "5"))
                .then(Answer.events("{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"ok\"},\"finish_reason\":null}]}",
                        "[DONE]"));
        try (Stream<ChatDelta> stream = client().chatStream(ChatRequest.builder().user("What?").build())) {
            assertThat(stream.map(ChatDelta::content).collect(Collectors.joining())).isEqualTo("ok");
        }
        assertThat(timing.sleeps).hasSize(1);
        assertThat(timing.sleeps.get(0)).isGreaterThanOrEqualTo(Duration.ofSeconds(5));
    }

    @Test
    void closing_a_stream_early_ends_the_call_as_cancelled() {
        gateway.then(Answer.events("{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"},\"finish_reason\":null}]}",
                "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"b\"},\"finish_reason\":null}]}",
                "[DONE]").pausedBetweenChunks(200));
        try (Stream<ChatDelta> stream = client().chatStream(ChatRequest.builder().user("What?").build())) {
            assertThat(stream.findFirst().map(ChatDelta::content)).contains("a");
        }
        assertThat(observed).containsExactly("chat-stream:CANCELLED");
    }

    @Test
    void models_presets_and_the_model_health_are_read() {
        gateway.then(Answer.json(200, "{\"object\":\"list\",\"data\":[{\"id\":\"llava-demo\"},{\"id\":\"gpt-4o\"}]}"))
                .then(Answer.json(200, "{\"presets\":[{\"name\":\"qc-inspection\",\"description\":\"QC\","
                        + "\"prompt\":\"Inspect\",\"schema\":{\"type\":\"object\"},\"maxTokens\":300}]}"))
                .then(Answer.json(200, "{\"status\":\"DOWN\",\"details\":{\"state\":\"loading\",\"phase\":\"weights\"}}"));
        LlavaClient client = client();

        assertThat(client.models()).containsExactly("llava-demo", "gpt-4o");
        assertThat(gateway.last().path()).isEqualTo("/v1/models");
        PresetInfo preset = client.presets().get(0);
        assertThat(preset.preset()).isEqualTo(Preset.QC_INSPECTION);
        assertThat(preset.maxTokens()).isEqualTo(300);
        assertThat(preset.schema().path("type").asText()).isEqualTo("object");
        ModelHealth health = client.modelHealth(Duration.ofSeconds(1));
        assertThat(health.ready()).isFalse();
        assertThat(health.state()).isEqualTo("loading");
        assertThat(health.details().path("phase").asText()).isEqualTo("weights");
        assertThat(gateway.last().path()).isEqualTo("/health/model");
    }

    @Test
    void a_refused_connection_is_retried_then_thrown() throws IOException {
        int closedPort;
        try (java.net.ServerSocket socket = new java.net.ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress())) {
            closedPort = socket.getLocalPort();
        }
        LlavaClient client = LlavaClient.builder().baseUrl("http://127.0.0.1:" + closedPort).timing(timing).build();
        assertThatThrownBy(() -> client.analyze(Image.of(JPEG), "?"))
                .isInstanceOfSatisfying(LlavaConnectionException.class, e -> assertThat(e.requestId()).hasSize(32));
        assertThat(timing.sleeps).hasSize(RetryPolicy.DEFAULT.maxAttempts() - 1);
    }

    @Test
    void a_gateway_that_never_answers_times_out_and_is_not_retried() throws IOException {
        // Listening, never accepting: the kernel completes the connection, nobody answers.
        try (java.net.ServerSocket silent = new java.net.ServerSocket(0, 50, java.net.InetAddress.getLoopbackAddress())) {
            LlavaClient client = LlavaClient.builder().baseUrl("http://127.0.0.1:" + silent.getLocalPort())
                    .timeout(Duration.ofMillis(300)).timing(timing).build();
            assertThatThrownBy(client::models).isInstanceOf(LlavaTimeoutException.class);
        }
        assertThat(timing.sleeps).isEmpty();
    }

    @Test
    void base_urls_with_and_without_v1_name_the_same_root() {
        assertThat(LlavaClient.root("http://h:8080")).hasToString("http://h:8080/");
        assertThat(LlavaClient.root("http://h:8080/v1/")).hasToString("http://h:8080/");
        assertThat(LlavaClient.root("https://h/llava/v1")).hasToString("https://h/llava/");
        assertThatThrownBy(() -> LlavaClient.root("h:8080")).isInstanceOf(IllegalArgumentException.class);
    }

    @Test
    void the_api_key_never_shows_in_to_string() {
        assertThat(client().toString()).doesNotContain("k-1").contains("with an API key");
    }
}
