package ai.llava.client;

/**
 * The call's time ran out: one attempt waited past the client's timeout, or the deadline over all
 * attempts passed. Not retried: a call that timed out used the time a retry would need.
 */
public class LlavaTimeoutException extends LlavaException {

    private static final long serialVersionUID = 1L;

    public LlavaTimeoutException(String message, String requestId, Throwable cause) {
        super("TIMEOUT", message, 0, null, requestId, cause);
    }
}
