package ai.llava.client;

import java.time.Duration;

/**
 * HTTP 429: the gateway is at its limit (its admission line is full, a request waited too long
 * for a model slot, or the model's own queue is full). Thrown once the client's retries, which
 * wait {@link #retryAfter()} each time, ran out of attempts or deadline.
 */
public class OverloadedException extends RetryableException {

    private static final long serialVersionUID = 1L;

    public OverloadedException(String message, String code, Duration retryAfter, String requestId) {
        super("OVERLOADED", message, 429, code, retryAfter, requestId, null);
    }
}
