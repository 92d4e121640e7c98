package ai.llava.client;

import java.io.IOException;
import java.io.InterruptedIOException;
import java.net.SocketTimeoutException;
import java.net.http.HttpConnectTimeoutException;
import java.net.http.HttpTimeoutException;
import java.time.Duration;
import java.util.concurrent.ThreadLocalRandom;

/** Runs one call's attempts under a {@link RetryPolicy}: which failures are retried and how long to wait. */
final class Retrier {

    /** An attempt: a reply read into a value, or a LlavaException / IOException. */
    @FunctionalInterface
    interface Attempt<R> {
        R run(Duration timeout) throws IOException;
    }

    private final RetryPolicy policy;
    private final Duration timeout;
    private final Timing timing;

    Retrier(RetryPolicy policy, Duration timeout, Timing timing) {
        this.policy = policy;
        this.timeout = timeout;
        this.timing = timing;
    }

    <R> R run(String requestId, Attempt<R> attempt) {
        long deadline = timing.nanoTime() + policy.deadline().toNanos();
        for (int number = 1; ; number++) {
            Duration remaining = Duration.ofNanos(deadline - timing.nanoTime());
            if (remaining.isNegative() || remaining.isZero()) {
                throw new LlavaTimeoutException("the deadline of " + policy.deadline() + " passed", requestId, null);
            }
            LlavaException failure;
            try {
                return attempt.run(remaining.compareTo(timeout) < 0 ? remaining : timeout);
            } catch (LlavaException e) {
                failure = e;
            } catch (IOException e) {
                failure = fromIo(e, requestId);
            }
            if (!failure.retryable() || number >= policy.maxAttempts()) {
                throw failure;
            }
            int attempts = number;
            Duration wait = failure.retryAfter().map(Retrier::spread).orElseGet(() -> backoff(policy, attempts));
            if (wait.compareTo(Duration.ofNanos(deadline - timing.nanoTime())) >= 0) {
                throw failure;  // waiting would end past the deadline: the caller learns now
            }
            try {
                timing.sleep(wait);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new LlavaException("INTERRUPTED", "interrupted while waiting to retry", 0, null, requestId, e);
            }
        }
    }

    static LlavaException fromIo(IOException e, String requestId) {
        if (e instanceof HttpConnectTimeoutException) {
            return new LlavaConnectionException("no connection to the gateway within the connect timeout", requestId, e);
        }
        if (e instanceof HttpTimeoutException || e instanceof SocketTimeoutException) {
            return new LlavaTimeoutException("no answer within the timeout", requestId, e);
        }
        if (e instanceof InterruptedIOException) {
            return new LlavaException("INTERRUPTED", "interrupted while waiting for the gateway", 0, null, requestId, e);
        }
        return new LlavaConnectionException("the connection to the gateway failed: " + e, requestId, e);
    }

    /** Retry-After and up to a tenth more (at most 1 s), so that clients told alike do not return together. */
    private static Duration spread(Duration retryAfter) {
        long extra = Math.min(retryAfter.toMillis() / 10, 1000);
        return retryAfter.plusMillis(extra == 0 ? 0 : ThreadLocalRandom.current().nextLong(extra + 1));
    }

    /** Exponential, between half and all of initial x 2^(n-1), capped at maxBackoff. */
    static Duration backoff(RetryPolicy policy, int attempt) {
        long ceiling = policy.initialBackoff().toMillis() << Math.min(attempt - 1, 20);
        long capped = Math.min(ceiling, policy.maxBackoff().toMillis());
        return Duration.ofMillis(capped / 2 + ThreadLocalRandom.current().nextLong(capped / 2 + 1));
    }
}
