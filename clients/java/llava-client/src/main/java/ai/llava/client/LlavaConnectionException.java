package ai.llava.client;

/**
 * No answer: the connection was refused, could not be made in time, or broke before the
 * response arrived. Every call of this client is safe to repeat (it changes nothing on the
 * server), so these are retried like a 503.
 */
public class LlavaConnectionException extends RetryableException {

    private static final long serialVersionUID = 1L;

    public LlavaConnectionException(String message, String requestId, Throwable cause) {
        super("CONNECTION_ERROR", message, 0, null, null, requestId, cause);
    }
}
