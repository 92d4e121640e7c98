package ai.llava.client;

import java.util.ArrayList;
import java.util.List;
import java.util.Objects;

/**
 * A call to the OpenAI-compatible {@code POST /v1/chat/completions}: turns of text with images in
 * user turns, generation parameters, and optionally a JSON Schema the answer follows.
 */
public final class ChatRequest {

    /** One turn: role, text, and (user turns only) images. */
    public record Message(String role, String text, List<Image> images) {
        public Message {
            Objects.requireNonNull(role, "role");
            Objects.requireNonNull(text, "text");
            images = List.copyOf(images);
        }
    }

    private final String model;
    private final List<Message> messages;
    private final Integer maxTokens;
    private final Double temperature;
    private final Long seed;
    private final String schemaName;
    private final String schema;
    private final String requestId;

    private ChatRequest(Builder builder) {
        this.model = builder.model;
        this.messages = List.copyOf(builder.messages);
        this.maxTokens = builder.maxTokens;
        this.temperature = builder.temperature;
        this.seed = builder.seed;
        this.schemaName = builder.schemaName;
        this.schema = builder.schema;
        this.requestId = builder.requestId;
        if (messages.isEmpty() || !messages.get(messages.size() - 1).role().equals("user")) {
            throw new IllegalArgumentException("a chat request ends with a user message");
        }
    }

    public static Builder builder() {
        return new Builder();
    }

    public String model() {
        return model;
    }

    public List<Message> messages() {
        return messages;
    }

    public Integer maxTokens() {
        return maxTokens;
    }

    public Double temperature() {
        return temperature;
    }

    public Long seed() {
        return seed;
    }

    public String schemaName() {
        return schemaName;
    }

    public String schema() {
        return schema;
    }

    public String requestId() {
        return requestId;
    }

    public static final class Builder {
        private String model;
        private final List<Message> messages = new ArrayList<>();
        private Integer maxTokens;
        private Double temperature;
        private Long seed;
        private String schemaName;
        private String schema;
        private String requestId;

        /** The served model's name or an alias; left out, the gateway's model answers. */
        public Builder model(String model) {
            this.model = model;
            return this;
        }

        public Builder system(String text) {
            messages.add(new Message("system", text, List.of()));
            return this;
        }

        public Builder user(String text, Image... images) {
            messages.add(new Message("user", text, List.of(images)));
            return this;
        }

        public Builder assistant(String text) {
            messages.add(new Message("assistant", text, List.of()));
            return this;
        }

        /** 1..1024 (default 512). */
        public Builder maxTokens(int maxTokens) {
            this.maxTokens = maxTokens;
            return this;
        }

        /** 0..2 (default 1, as OpenAI's); 0 is greedy. */
        public Builder temperature(double temperature) {
            this.temperature = temperature;
            return this;
        }

        /** The same seed, request and model give the same answer. */
        public Builder seed(long seed) {
            this.seed = seed;
            return this;
        }

        /** The answer is JSON following this JSON Schema (JSON text), enforced token by token. */
        public Builder jsonSchema(String name, String jsonSchema) {
            this.schemaName = Objects.requireNonNull(name, "name");
            this.schema = Objects.requireNonNull(jsonSchema, "jsonSchema");
            return this;
        }

        /** The client's id, sent as X-Request-ID on every attempt (the gateway logs it beside its own); made when not given. */
        public Builder requestId(String requestId) {
            this.requestId = requestId;
            return this;
        }

        public ChatRequest build() {
            return new ChatRequest(this);
        }
    }
}
