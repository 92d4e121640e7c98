package ai.llava.client;

import com.fasterxml.jackson.databind.JsonNode;

/** One preset of {@code GET /api/v1/multimodal/presets}: its question, answer schema and default max-tokens. */
public record PresetInfo(String name, String description, String prompt, JsonNode schema, int maxTokens) {

    public Preset preset() {
        return Preset.named(name);
    }
}
