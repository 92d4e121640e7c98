package ai.llava.client;

import java.time.Duration;
import java.util.Optional;

/**
 * Any failure of a call to the gateway. The subclass says what kind; {@link #kind()} names it
 * for logs and metrics. Messages are the gateway's own (written for clients) or say what the
 * client saw; {@link #requestId()} finds the call in the gateway's and model's logs.
 */
public class LlavaException extends RuntimeException {

    private static final long serialVersionUID = 1L;

    private final String kind;
    private final int httpStatus;
    private final String code;
    private final String requestId;

    public LlavaException(String kind, String message, int httpStatus, String code, String requestId, Throwable cause) {
        super(message, cause);
        this.kind = kind;
        this.httpStatus = httpStatus;
        this.code = code;
        this.requestId = requestId;
    }

    /** The kind of failure, one of a few fixed names: VALIDATION_ERROR, OVERLOADED, TIMEOUT, ... */
    public String kind() {
        return kind;
    }

    /** The gateway's HTTP status; 0 when no answer came (timeout, connection failure). */
    public int httpStatus() {
        return httpStatus;
    }

    /** The gateway's code: a native status (VALIDATION_ERROR, ...) or an OpenAI error code; may be null. */
    public String code() {
        return code;
    }

    /**
     * The gateway's id for the failed attempt when it answered (its logs and the model's carry it), else the
     * client's id the call was sent with (X-Request-ID; the gateway logs it as client_request_id).
     */
    public String requestId() {
        return requestId;
    }

    /** Whether the same call may succeed later: the client retries these within its deadline. */
    public boolean retryable() {
        return false;
    }

    /** How long the gateway asked to wait before trying again, when it said. */
    public Optional<Duration> retryAfter() {
        return Optional.empty();
    }
}
