package ai.llava.client;

/**
 * HTTP 500 or another 5xx but 503: a bug in the gateway (its log has the cause under
 * {@link #requestId()}) or a proxy in front of it failing; also an error event in the middle
 * of a stream. Not retried.
 */
public class ServerErrorException extends LlavaException {

    private static final long serialVersionUID = 1L;

    public ServerErrorException(String message, int httpStatus, String code, String requestId) {
        super("SERVER_ERROR", message, httpStatus, code, requestId, null);
    }
}
