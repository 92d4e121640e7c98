package ai.llava.client;

import java.time.Duration;
import java.util.Optional;

/** A refusal that may pass later, with the wait the gateway asked for (Retry-After), if any. */
public abstract class RetryableException extends LlavaException {

    private static final long serialVersionUID = 1L;

    private final Duration retryAfter;

    protected RetryableException(String kind, String message, int httpStatus, String code, Duration retryAfter,
                                 String requestId, Throwable cause) {
        super(kind, message, httpStatus, code, requestId, cause);
        this.retryAfter = retryAfter;
    }

    @Override
    public boolean retryable() {
        return true;
    }

    @Override
    public Optional<Duration> retryAfter() {
        return Optional.ofNullable(retryAfter);
    }
}
