package ai.llava.client;

import ai.llava.client.transport.HttpCall;
import ai.llava.client.transport.HttpReply;
import ai.llava.client.transport.JdkTransport;
import ai.llava.client.transport.Transport;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.io.IOException;
import java.net.URI;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.UUID;
import java.util.function.Function;
import java.util.function.Supplier;
import java.util.stream.Stream;

/**
 * A client of the LLaVA gateway: the native analyze API (free text, presets, JSON Schema answers
 * mapped to your records) and the OpenAI-compatible chat completions (plain or streamed).
 * Thread-safe; build one and share it.
 *
 * <pre>{@code
 * LlavaClient llava = LlavaClient.builder().baseUrl("http://localhost:8080").build();
 * record Defect(String kind, String location) {}
 * record QcReport(String verdict, List<Defect> defects) {}
 * QcReport report = llava.analyze(Image.of(Path.of("part.jpg")), Preset.QC_INSPECTION, QcReport.class).data();
 * }</pre>
 *
 * Failures are {@link LlavaException}s, one subclass per kind; 429 and 503 are retried as
 * {@link RetryPolicy} says, within its deadline.
 */
public final class LlavaClient {

    static final String ANALYZE = "api/v1/multimodal/analyze";
    private static final String JSON = "application/json";
    // Problem details first: they name the field at fault (an AnalysisResult does not).
    private static final String ACCEPT_NATIVE = "application/problem+json, application/json;q=0.9";
    private static final String USER_AGENT = "llava-java/" + version();

    private final URI root;
    private final String apiKey;
    private final Transport transport;
    private final ObjectMapper json;
    private final Duration timeout;
    private final Retrier retrier;
    private final CallObserver observer;
    private final long maxImageBytes;
    private final Chats chats;

    private LlavaClient(Builder builder, Timing timing) {
        this.root = root(builder.baseUrl);
        this.apiKey = builder.apiKey == null || builder.apiKey.isBlank() ? null : builder.apiKey;
        this.transport = builder.transport != null ? builder.transport : new JdkTransport(builder.connectTimeout);
        this.json = builder.objectMapper != null ? builder.objectMapper
                : new ObjectMapper().disable(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES);
        this.timeout = builder.timeout;
        this.retrier = new Retrier(builder.retry, builder.timeout, timing);
        this.observer = builder.observer;
        this.maxImageBytes = builder.maxImageBytes;
        this.chats = new Chats(json);
    }

    public static Builder builder() {
        return new Builder();
    }

    /** A client of the gateway at {@code baseUrl} ({@code http://host:8080}, with or without {@code /v1}). */
    public static LlavaClient create(String baseUrl) {
        return builder().baseUrl(baseUrl).build();
    }

    /** The gateway's root (the native API is under it; the OpenAI face under {@code v1/}). */
    public URI baseUrl() {
        return root;
    }

    // ------------------------------------------------------------------ native API

    /** A question about an image; the answer is free text ({@code result}). */
    public Analysis<JsonNode> analyze(Image image, String prompt) {
        return analyze(AnalyzeRequest.builder(image).prompt(prompt).build());
    }

    /** A preset's question; its answer ({@code data}) mapped to {@code type}. */
    public <T> Analysis<T> analyze(Image image, Preset preset, Class<T> type) {
        return analyze(AnalyzeRequest.builder(image).preset(preset).build(), type);
    }

    /** With a preset or schema, {@code data} is the answer as a JSON tree; otherwise null. */
    public Analysis<JsonNode> analyze(AnalyzeRequest request) {
        return analyze(request, JsonNode.class);
    }

    /**
     * POST /api/v1/multimodal/analyze. With a preset or schema the answer's {@code data} is mapped to
     * {@code type}; a FALLBACK answer then has no data and is retried, then thrown, as a
     * {@link ServiceUnavailableException}. A free-text FALLBACK is returned as it is: its result is
     * the gateway's friendly message, meant to be shown.
     */
    public <T> Analysis<T> analyze(AnalyzeRequest request, Class<T> type) {
        String requestId = requestId(request.requestId());
        return observed("analyze", requestId, () -> {
            Multipart form = new Multipart();
            byte[] image = imageBytes(request.image(), requestId);
            form.file("image", request.image().fileName(), MediaTypes.of(image), image);
            if (request.prompt() != null) {
                form.field("prompt", request.prompt());
            }
            if (request.preset() != null) {
                form.field("preset", request.preset().name());
            }
            if (request.schema() != null) {
                form.field("schema", request.schema());
            }
            if (request.maxTokens() != null) {
                form.field("max-tokens", request.maxTokens().toString());
            }
            if (request.temperature() != null) {
                form.field("temperature", request.temperature().toString());
            }
            HttpCall call = call("POST", ANALYZE, requestId, ACCEPT_NATIVE, form.contentType(), form.bytes());
            return retrier.run(requestId, t -> readAnalysis(send(call, t), request, type, requestId));
        }, analysis -> analysis.status().name());
    }

    /** GET /api/v1/multimodal/presets: the presets with their questions and answer schemas. */
    public List<PresetInfo> presets() {
        String requestId = requestId(null);
        return observed("presets", requestId, () -> {
            HttpCall call = call("GET", "api/v1/multimodal/presets", requestId, JSON, null, null);
            JsonNode list = retrier.run(requestId, t -> readJson(send(call, t), requestId)).path("presets");
            List<PresetInfo> presets = new ArrayList<>();
            for (JsonNode preset : list) {
                presets.add(json.convertValue(preset, PresetInfo.class));
            }
            return presets;
        }, presets -> "SUCCESS");
    }

    // ------------------------------------------------------------------ OpenAI face

    /** POST /v1/chat/completions. */
    public ChatCompletion chat(ChatRequest request) {
        String requestId = requestId(request.requestId());
        return observed("chat", requestId, () -> {
            HttpCall call = call("POST", "v1/chat/completions", requestId, JSON, JSON,
                    chats.body(request, images(request, requestId), false));
            return retrier.run(requestId, t -> {
                HttpReply reply = send(call, t);
                return chats.completion(readJson(reply, requestId), reply, requestId);
            });
        }, ChatCompletion::gatewayStatus);
    }

    /** A chat whose answer is JSON (give the request a {@link ChatRequest.Builder#jsonSchema schema}), mapped to {@code type}. */
    public <T> T chat(ChatRequest request, Class<T> type) {
        ChatCompletion completion = chat(request);
        if ("length".equals(completion.finishReason())) {
            throw new TruncatedAnswerException("the answer was cut at max_tokens before its JSON was complete",
                    completion.requestId());
        }
        return mapped(completion.content(), type, completion.requestId());
    }

    /**
     * POST /v1/chat/completions with {@code stream: true}: the answer as the model makes it. Close the
     * stream (try-with-resources) to end the call early; the gateway then stops the generation. A
     * failure before the first event is retried like any call; one after it ends the stream with an
     * exception.
     */
    public Stream<ChatDelta> chatStream(ChatRequest request) {
        String requestId = requestId(request.requestId());
        CallObserver.Call observed = observer.start("chat-stream");
        observed.requestId(requestId);
        try {
            HttpCall call = call("POST", "v1/chat/completions", requestId, "text/event-stream", JSON,
                    chats.body(request, images(request, requestId), true));
            HttpReply reply = retrier.run(requestId, t -> {
                HttpReply opened = send(call, t);
                if (opened.status() != 200) {
                    throw failure(opened, requestId);
                }
                return opened;
            });
            return new ChatEvents(reply, json, requestId, observed).stream();
        } catch (RuntimeException e) {
            observed.end(kind(e), e);
            throw e;
        }
    }

    /** GET /v1/models: the served model's name and its aliases. */
    public List<String> models() {
        String requestId = requestId(null);
        return observed("models", requestId, () -> {
            HttpCall call = call("GET", "v1/models", requestId, JSON, null, null);
            List<String> ids = new ArrayList<>();
            retrier.run(requestId, t -> readJson(send(call, t), requestId)).path("data")
                    .forEach(model -> ids.add(model.path("id").asText()));
            return ids;
        }, ids -> "SUCCESS");
    }

    // ------------------------------------------------------------------ operations

    /** GET /health/model, one attempt within {@code timeout}: the model's state (ready, loading, restarting, ...). */
    public ModelHealth modelHealth(Duration timeout) {
        String requestId = requestId(null);
        return observed("model-health", requestId, () -> {
            HttpCall call = call("GET", "health/model", requestId, JSON, null, null);
            JsonNode health;
            try {
                health = readJson(send(call, timeout), requestId);
            } catch (IOException e) {
                throw Retrier.fromIo(e, requestId);
            }
            return new ModelHealth(health.path("status").asText(), health.path("details").path("state").asText(),
                    health.path("details"));
        }, health -> health.status());
    }

    public ModelHealth modelHealth() {
        return modelHealth(timeout);
    }

    // ------------------------------------------------------------------ plumbing

    private <R> R observed(String operation, String requestId, Supplier<R> work, Function<R, String> status) {
        CallObserver.Call observed = observer.start(operation);
        observed.requestId(requestId);
        try {
            R result = work.get();
            observed.end(status.apply(result), null);
            return result;
        } catch (RuntimeException e) {
            observed.end(kind(e), e);
            throw e;
        }
    }

    static String kind(RuntimeException e) {
        return e instanceof LlavaException failure ? failure.kind() : "CLIENT_ERROR";
    }

    private HttpCall call(String method, String path, String requestId, String accept, String contentType,
                          byte[] body) {
        Map<String, String> headers = new LinkedHashMap<>();
        headers.put("Accept", accept);
        headers.put("User-Agent", USER_AGENT);
        headers.put("X-Request-ID", requestId);
        if (apiKey != null) {
            headers.put("Authorization", "Bearer " + apiKey);
        }
        if (contentType != null) {
            headers.put("Content-Type", contentType);
        }
        return new HttpCall(method, root.resolve(path), headers, body, timeout);
    }

    private HttpReply send(HttpCall call, Duration attemptTimeout) throws IOException {
        return transport.send(call.withTimeout(attemptTimeout));
    }

    private LlavaException failure(HttpReply reply, String requestId) throws IOException {
        try (reply) {
            return Errors.fromAnswer(reply.status(), reply.header("Retry-After"), reply.body().readAllBytes(),
                    reply.header("X-Request-ID").orElse(requestId), json);
        }
    }

    /** A 200 answer's JSON; any other status as its exception. */
    private JsonNode readJson(HttpReply reply, String requestId) throws IOException {
        if (reply.status() != 200) {
            throw failure(reply, requestId);
        }
        try (reply) {
            return json.readTree(reply.body());
        } catch (com.fasterxml.jackson.core.JsonProcessingException e) {
            throw new ServerErrorException("the gateway's answer is not JSON", 200, null, requestId);
        }
    }

    private <T> Analysis<T> readAnalysis(HttpReply reply, AnalyzeRequest request, Class<T> type, String requestId)
            throws IOException {
        JsonNode answer = readJson(reply, requestId);
        String id = answer.path("requestId").asText(requestId);
        AnswerStatus status;
        try {
            status = AnswerStatus.valueOf(answer.path("status").asText());
        } catch (IllegalArgumentException e) {
            throw new ServerErrorException("the gateway answered 200 with status " + answer.path("status"), 200,
                    null, id);
        }
        String result = answer.path("result").asText();
        if (status == AnswerStatus.FALLBACK && request.structured()) {
            throw new ServiceUnavailableException(result, 200, "FALLBACK", null, id);
        }
        T data = null;
        if (request.structured()) {
            JsonNode node = answer.path("data");
            if (node.isNull() || node.isMissingNode()) {
                throw new TruncatedAnswerException("the answer was cut at max-tokens before its JSON was complete "
                        + "(leave max-tokens unset for the preset's default, which fits every answer)", id);
            }
            data = type == JsonNode.class ? type.cast(node) : mapped(node, type, id);
        }
        JsonNode usage = answer.path("usage");
        return new Analysis<>(status, result, id, answer.path("model").isNull() ? null : answer.path("model").asText(),
                usage.isObject() ? new Usage(usage.path("promptTokens").asInt(), usage.path("completionTokens").asInt())
                        : null,
                answer.path("latencyMs").asLong(), data);
    }

    private <T> T mapped(Object value, Class<T> type, String requestId) {
        try {
            return value instanceof String text ? json.readValue(text, type) : json.convertValue(value, type);
        } catch (IOException | IllegalArgumentException e) {
            throw new LlavaException("MAPPING_ERROR", "the answer does not map to " + type.getName() + ": "
                    + e.getMessage(), 200, null, requestId, e);
        }
    }

    private List<List<byte[]>> images(ChatRequest request, String requestId) {
        List<List<byte[]>> images = new ArrayList<>();
        for (ChatRequest.Message message : request.messages()) {
            List<byte[]> bytes = new ArrayList<>();
            message.images().forEach(image -> bytes.add(imageBytes(image, requestId)));
            images.add(bytes);
        }
        return images;
    }

    /** The image's bytes; a URL is downloaded (no API key sent, at most maxImageBytes). */
    private byte[] imageBytes(Image image, String requestId) {
        byte[] local = image.localBytes(maxImageBytes);
        if (local != null) {
            return local;
        }
        HttpCall call = new HttpCall("GET", image.remote(), Map.of("Accept", "image/*", "User-Agent", USER_AGENT),
                null, timeout);
        try (HttpReply reply = transport.send(call)) {
            if (reply.status() != 200) {
                throw new ValidationException("could not download the image " + image.remote() + ": HTTP "
                        + reply.status(), 0, null, "image", requestId);
            }
            byte[] bytes = reply.body().readNBytes((int) Math.min(Integer.MAX_VALUE - 8, maxImageBytes + 1));
            if (bytes.length > maxImageBytes) {
                throw new ValidationException("the image " + image.remote() + " is over " + maxImageBytes + " bytes",
                        0, null, "image", requestId);
            }
            return bytes;
        } catch (IOException e) {
            throw new ValidationException("could not download the image " + image.remote() + ": " + e, 0, null,
                    "image", requestId);
        }
    }

    private static String requestId(String given) {
        return given != null ? given : UUID.randomUUID().toString().replace("-", "");
    }

    /** {@code http://host:8080}, {@code .../}, {@code .../v1} and {@code .../prefix/v1/} all name the same root. */
    static URI root(String baseUrl) {
        Objects.requireNonNull(baseUrl, "baseUrl");
        String trimmed = baseUrl.strip().replaceAll("/+$", "").replaceAll("/v1$", "");
        URI uri = URI.create(trimmed + "/");
        if (!"http".equals(uri.getScheme()) && !"https".equals(uri.getScheme()) || uri.getHost() == null) {
            throw new IllegalArgumentException("the base URL must be http(s)://host[:port][/path]: " + baseUrl);
        }
        return uri;
    }

    private static String version() {
        String version = LlavaClient.class.getPackage().getImplementationVersion();
        return version == null ? "dev" : version;
    }

    @Override
    public String toString() {
        return "LlavaClient(" + root + (apiKey == null ? "" : ", with an API key") + ")";
    }

    /** Settings of a client; every one has a default but the base URL's is localhost:8080 ({@code make demo}). */
    public static final class Builder {
        private String baseUrl = "http://localhost:8080";
        private String apiKey;
        private Duration connectTimeout = Duration.ofSeconds(5);
        // The gateway may hold a call for its admission wait (60 s) and its model read timeout
        // (60 s): a shorter timeout would give up on answers that are on their way.
        private Duration timeout = Duration.ofMinutes(2);
        private RetryPolicy retry = RetryPolicy.DEFAULT;
        private Transport transport;
        private ObjectMapper objectMapper;
        private CallObserver observer = CallObserver.NONE;
        private long maxImageBytes = 20L * 1024 * 1024;
        private Timing timing = Timing.SYSTEM;

        private Builder() {
        }

        /** The gateway, e.g. {@code http://llava-gateway:8080} (a trailing {@code /v1} is accepted). */
        public Builder baseUrl(String baseUrl) {
            this.baseUrl = baseUrl;
            return this;
        }

        /** Sent as {@code Authorization: Bearer} when the gateway has API_KEYS set. */
        public Builder apiKey(String apiKey) {
            this.apiKey = apiKey;
            return this;
        }

        /** For the default transport: how long a new connection may take (default 5 s). */
        public Builder connectTimeout(Duration connectTimeout) {
            this.connectTimeout = positive(connectTimeout, "connectTimeout");
            return this;
        }

        /** How long one attempt may wait for its answer (default 2 min; a stream: for its headers). */
        public Builder timeout(Duration timeout) {
            this.timeout = positive(timeout, "timeout");
            return this;
        }

        public Builder retry(RetryPolicy retry) {
            this.retry = Objects.requireNonNull(retry, "retry");
            return this;
        }

        /** What carries the requests (default: the JDK HttpClient, HTTP/1.1). */
        public Builder transport(Transport transport) {
            this.transport = transport;
            return this;
        }

        /** Maps answers to your types (default: a plain ObjectMapper that ignores unknown fields). */
        public Builder objectMapper(ObjectMapper objectMapper) {
            this.objectMapper = objectMapper;
            return this;
        }

        public Builder observer(CallObserver observer) {
            this.observer = Objects.requireNonNull(observer, "observer");
            return this;
        }

        /** The largest image read from a file or URL (default 20 MiB, the gateway's default limit). */
        public Builder maxImageBytes(long maxImageBytes) {
            if (maxImageBytes < 1) {
                throw new IllegalArgumentException("maxImageBytes must be positive");
            }
            this.maxImageBytes = maxImageBytes;
            return this;
        }

        Builder timing(Timing timing) {
            this.timing = timing;
            return this;
        }

        public LlavaClient build() {
            return new LlavaClient(this, timing);
        }

        private static Duration positive(Duration value, String name) {
            if (value == null || value.isNegative() || value.isZero()) {
                throw new IllegalArgumentException(name + " must be positive");
            }
            return value;
        }
    }
}
