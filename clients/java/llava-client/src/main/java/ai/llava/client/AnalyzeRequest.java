package ai.llava.client;

import java.util.Objects;

/**
 * A call to {@code POST /api/v1/multimodal/analyze}: an image and either a prompt, a preset, or a
 * JSON Schema the answer must follow (a prompt may go with a preset or schema as extra context).
 * Unset numbers take the gateway's defaults (max-tokens 512 or the preset's; temperature 0.2).
 */
public final class AnalyzeRequest {

    private final Image image;
    private final String prompt;
    private final Preset preset;
    private final String schema;
    private final Integer maxTokens;
    private final Double temperature;
    private final String requestId;

    private AnalyzeRequest(Builder builder) {
        this.image = Objects.requireNonNull(builder.image, "image");
        this.prompt = builder.prompt;
        this.preset = builder.preset;
        this.schema = builder.schema;
        this.maxTokens = builder.maxTokens;
        this.temperature = builder.temperature;
        this.requestId = builder.requestId;
        if (prompt == null && preset == null && schema == null) {
            throw new IllegalArgumentException("an analyze request needs a prompt, a preset or a schema");
        }
        if (preset != null && schema != null) {
            throw new IllegalArgumentException("send either a preset or a schema, not both");
        }
    }

    public static Builder builder(Image image) {
        return new Builder(image);
    }

    public Image image() {
        return image;
    }

    public String prompt() {
        return prompt;
    }

    public Preset preset() {
        return preset;
    }

    public String schema() {
        return schema;
    }

    public Integer maxTokens() {
        return maxTokens;
    }

    public Double temperature() {
        return temperature;
    }

    public String requestId() {
        return requestId;
    }

    /** Whether the answer carries data (a preset or schema was given). */
    public boolean structured() {
        return preset != null || schema != null;
    }

    public static final class Builder {
        private final Image image;
        private String prompt;
        private Preset preset;
        private String schema;
        private Integer maxTokens;
        private Double temperature;
        private String requestId;

        private Builder(Image image) {
            this.image = image;
        }

        /** The question (1..1000 characters); with a preset or schema, extra context after its question. */
        public Builder prompt(String prompt) {
            this.prompt = prompt;
            return this;
        }

        public Builder preset(Preset preset) {
            this.preset = preset;
            return this;
        }

        /** A JSON Schema (as JSON text) the answer follows by construction. */
        public Builder schema(String jsonSchema) {
            this.schema = jsonSchema;
            return this;
        }

        /** 1..1024. */
        public Builder maxTokens(int maxTokens) {
            this.maxTokens = maxTokens;
            return this;
        }

        /** 0..2; 0 is greedy (the same answer every time, and cacheable). */
        public Builder temperature(double temperature) {
            this.temperature = temperature;
            return this;
        }

        /**
         * The client's id (letters, digits, {@code ._:-}, up to 128), sent as X-Request-ID on every attempt: the gateway
         * keeps it beside its own id (X-Client-Request-ID, client_request_id= in its logs). Made when not given.
         */
        public Builder requestId(String requestId) {
            this.requestId = requestId;
            return this;
        }

        public AnalyzeRequest build() {
            return new AnalyzeRequest(this);
        }
    }
}
