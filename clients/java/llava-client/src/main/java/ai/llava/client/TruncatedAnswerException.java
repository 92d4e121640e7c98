package ai.llava.client;

/**
 * A structured answer (preset or schema) was cut at max-tokens before its JSON was complete, so
 * there is no data to map. Ask again with a larger max-tokens (a preset's default always fits).
 */
public class TruncatedAnswerException extends LlavaException {

    private static final long serialVersionUID = 1L;

    public TruncatedAnswerException(String message, String requestId) {
        super("TRUNCATED", message, 200, "TRUNCATED", requestId, null);
    }
}
