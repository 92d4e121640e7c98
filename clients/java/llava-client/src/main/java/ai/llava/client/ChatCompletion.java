package ai.llava.client;

/**
 * The answer of {@code POST /v1/chat/completions}.
 *
 * @param id            {@code chatcmpl-<request id>}
 * @param model         the model that answered
 * @param content       the answer's text (JSON with a schema)
 * @param finishReason  {@code stop} or {@code length} (cut at max_tokens)
 * @param usage         the tokens read and written
 * @param requestId     the gateway's id for the request (its X-Request-ID answer header)
 * @param gatewayStatus SUCCESS or CACHED (the gateway's X-Gateway-Status)
 */
public record ChatCompletion(String id, String model, String content, String finishReason, Usage usage,
                             String requestId, String gatewayStatus) {
}
