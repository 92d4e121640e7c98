package ai.llava.client;

/** HTTP 401: the gateway requires an API key ({@code API_KEYS}) and got none or a wrong one. */
public class AuthenticationException extends LlavaException {

    private static final long serialVersionUID = 1L;

    public AuthenticationException(String message, int httpStatus, String code, String requestId) {
        super("UNAUTHORIZED", message, httpStatus, code, requestId, null);
    }
}
