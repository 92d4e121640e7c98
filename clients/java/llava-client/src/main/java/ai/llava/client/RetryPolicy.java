package ai.llava.client;

import java.time.Duration;
import java.util.Objects;

/**
 * When the client tries a call again: on 429 and 503 (waiting the Retry-After the gateway sent,
 * else a growing backoff), on a FALLBACK answer to a call that asked for data, and on connection
 * failures; never on another 4xx, a 500 or a timeout. Every call of the client is safe to repeat:
 * it changes nothing on the server, and every attempt carries the same client id (X-Request-ID).
 *
 * @param maxAttempts    attempts in all (1 = no retries)
 * @param deadline       the time all attempts and waits may take together; a wait that would end
 *                       past it is not started (the last failure is thrown instead)
 * @param initialBackoff the first wait when the gateway named none; doubled each time, with jitter
 * @param maxBackoff     the longest such wait
 */
public record RetryPolicy(int maxAttempts, Duration deadline, Duration initialBackoff, Duration maxBackoff) {

    public static final RetryPolicy DEFAULT =
            new RetryPolicy(5, Duration.ofMinutes(3), Duration.ofMillis(500), Duration.ofSeconds(10));

    public RetryPolicy {
        if (maxAttempts < 1) {
            throw new IllegalArgumentException("maxAttempts must be at least 1");
        }
        Objects.requireNonNull(deadline, "deadline");
        Objects.requireNonNull(initialBackoff, "initialBackoff");
        Objects.requireNonNull(maxBackoff, "maxBackoff");
        if (deadline.isNegative() || deadline.isZero() || initialBackoff.isNegative() || maxBackoff.isNegative()) {
            throw new IllegalArgumentException("deadline must be positive and the backoffs not negative");
        }
    }

    /** One attempt within the deadline. */
    public static RetryPolicy none(Duration deadline) {
        return new RetryPolicy(1, deadline, Duration.ZERO, Duration.ZERO);
    }
}
