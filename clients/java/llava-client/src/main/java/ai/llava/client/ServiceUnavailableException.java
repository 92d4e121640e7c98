package ai.llava.client;

import java.time.Duration;

/**
 * The model cannot answer now: HTTP 503 (down, loading, restarting, timed out, its breaker open),
 * or a FALLBACK answer to a call that asked for structured data (the friendly text is in the
 * message; {@link #code()} is FALLBACK). Thrown once the client's retries ran out.
 */
public class ServiceUnavailableException extends RetryableException {

    private static final long serialVersionUID = 1L;

    public ServiceUnavailableException(String message, int httpStatus, String code, Duration retryAfter,
                                       String requestId) {
        super("SERVICE_UNAVAILABLE", message, httpStatus, code, retryAfter, requestId, null);
    }
}
