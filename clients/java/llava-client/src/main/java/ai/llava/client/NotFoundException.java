package ai.llava.client;

/** HTTP 404: a model name the gateway does not serve, or a path it does not have (a wrong base URL). */
public class NotFoundException extends LlavaException {

    private static final long serialVersionUID = 1L;

    public NotFoundException(String message, String code, String requestId) {
        super("NOT_FOUND", message, 404, code, requestId, null);
    }
}
