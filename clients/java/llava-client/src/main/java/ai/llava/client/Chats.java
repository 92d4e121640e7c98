package ai.llava.client;

import ai.llava.client.transport.HttpReply;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;

import java.util.Base64;
import java.util.List;

/** Chat completion requests as the OpenAI protocol spells them, and its answers read back. */
final class Chats {

    private final ObjectMapper json;

    Chats(ObjectMapper json) {
        this.json = json;
    }

    /** The request body; {@code images} holds each message's images' bytes, in order. */
    byte[] body(ChatRequest request, List<List<byte[]>> images, boolean stream) {
        ObjectNode body = json.createObjectNode();
        if (request.model() != null) {
            body.put("model", request.model());
        }
        ArrayNode messages = body.putArray("messages");
        for (int i = 0; i < request.messages().size(); i++) {
            ChatRequest.Message message = request.messages().get(i);
            ObjectNode turn = messages.addObject().put("role", message.role());
            if (images.get(i).isEmpty()) {
                turn.put("content", message.text());
                continue;
            }
            ArrayNode parts = turn.putArray("content");
            parts.addObject().put("type", "text").put("text", message.text());
            for (byte[] image : images.get(i)) {
                parts.addObject().put("type", "image_url").putObject("image_url").put("url",
                        "data:" + MediaTypes.of(image) + ";base64," + Base64.getEncoder().encodeToString(image));
            }
        }
        if (request.maxTokens() != null) {
            body.put("max_tokens", request.maxTokens());
        }
        if (request.temperature() != null) {
            body.put("temperature", request.temperature());
        }
        if (request.seed() != null) {
            body.put("seed", request.seed());
        }
        if (request.schema() != null) {
            ObjectNode format = body.putObject("response_format").put("type", "json_schema")
                    .putObject("json_schema").put("name", request.schemaName()).put("strict", true);
            try {
                format.set("schema", json.readTree(request.schema()));
            } catch (JsonProcessingException e) {
                throw new IllegalArgumentException("the chat request's JSON Schema is not JSON", e);
            }
        }
        if (stream) {
            body.put("stream", true);
            body.putObject("stream_options").put("include_usage", true);
        }
        try {
            return json.writeValueAsBytes(body);
        } catch (JsonProcessingException e) {
            throw new IllegalStateException("a JSON tree always serializes", e);
        }
    }

    ChatCompletion completion(JsonNode answer, HttpReply reply, String requestId) {
        JsonNode choice = answer.path("choices").path(0);
        return new ChatCompletion(answer.path("id").asText(), answer.path("model").asText(),
                choice.path("message").path("content").asText(""), text(choice.path("finish_reason")),
                usage(answer.path("usage")), reply.header("X-Request-ID").orElse(requestId),
                reply.header("X-Gateway-Status").orElse("SUCCESS"));
    }

    static Usage usage(JsonNode usage) {
        return usage.isObject() ? new Usage(usage.path("prompt_tokens").asInt(), usage.path("completion_tokens").asInt())
                : null;
    }

    static String text(JsonNode node) {
        return node.isTextual() ? node.asText() : null;
    }
}
