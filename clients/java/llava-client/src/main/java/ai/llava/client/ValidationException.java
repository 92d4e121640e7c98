package ai.llava.client;

/**
 * The gateway refused the request as it was sent (HTTP 400, 413 or 415): a missing or
 * out-of-range field, an image that is not JPEG/PNG/WebP/GIF, too large, corrupt, or a
 * prompt and images over the model's context. Sending it again does not help; {@link #field()}
 * names the part at fault when the gateway said.
 */
public class ValidationException extends LlavaException {

    private static final long serialVersionUID = 1L;

    private final String field;

    public ValidationException(String message, int httpStatus, String code, String field, String requestId) {
        super("VALIDATION_ERROR", message, httpStatus, code, requestId, null);
        this.field = field;
    }

    /** The request part or JSON path at fault ({@code image}, {@code max-tokens}, {@code messages[0].content}), or null. */
    public String field() {
        return field;
    }
}
