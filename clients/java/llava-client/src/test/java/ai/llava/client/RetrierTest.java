package ai.llava.client;

import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.net.ConnectException;
import java.net.http.HttpTimeoutException;
import java.time.Duration;
import java.util.concurrent.atomic.AtomicInteger;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class RetrierTest {

    final FakeTiming timing = new FakeTiming();
    final AtomicInteger attempts = new AtomicInteger();

    Retrier retrier(int maxAttempts, Duration deadline) {
        return new Retrier(new RetryPolicy(maxAttempts, deadline, Duration.ofMillis(100), Duration.ofSeconds(1)),
                Duration.ofSeconds(30), timing);
    }

    static OverloadedException overloaded(long seconds) {
        return new OverloadedException("busy", "OVERLOADED", Duration.ofSeconds(seconds), "r");
    }

    @Test
    void a_retry_after_past_the_deadline_is_not_waited_for() {
        assertThatThrownBy(() -> retrier(5, Duration.ofSeconds(10)).run("r", timeout -> {
            attempts.incrementAndGet();
            throw overloaded(30);
        })).isInstanceOf(OverloadedException.class);
        assertThat(attempts).hasValue(1);
        assertThat(timing.sleeps).isEmpty();
    }

    @Test
    void retries_stop_at_the_deadline_and_attempts_get_what_is_left() {
        java.util.List<Duration> timeouts = new java.util.ArrayList<>();
        assertThatThrownBy(() -> retrier(100, Duration.ofSeconds(10)).run("r", timeout -> {
            timeouts.add(timeout);
            throw overloaded(3);
        })).isInstanceOf(OverloadedException.class);
        // At 0 s, ~3 s, ~6 s and ~9 s (each wait 3 s and up to 0.3 s more): a fourth wait would end past 10 s.
        assertThat(timeouts).hasSize(4);
        assertThat(timeouts.get(0)).isEqualTo(Duration.ofSeconds(10));
        assertThat(timeouts.get(3)).isLessThanOrEqualTo(Duration.ofSeconds(1));
        assertThat(timing.sleeps).allSatisfy(wait -> assertThat(wait).isBetween(Duration.ofSeconds(3),
                Duration.ofMillis(3300)));
    }

    @Test
    void a_4xx_is_never_retried() {
        assertThatThrownBy(() -> retrier(5, Duration.ofMinutes(1)).run("r", timeout -> {
            attempts.incrementAndGet();
            throw new AuthenticationException("no key", 401, "UNAUTHORIZED", "r");
        })).isInstanceOf(AuthenticationException.class);
        assertThat(attempts).hasValue(1);
    }

    @Test
    void a_refused_connection_is_retried_with_a_growing_backoff() {
        String answer = retrier(4, Duration.ofMinutes(1)).run("r", timeout -> {
            if (attempts.incrementAndGet() < 4) {
                throw new ConnectException("refused");
            }
            return "ok";
        });
        assertThat(answer).isEqualTo("ok");
        assertThat(timing.sleeps).hasSize(3);
        assertThat(timing.sleeps.get(0)).isBetween(Duration.ofMillis(50), Duration.ofMillis(100));
        assertThat(timing.sleeps.get(2)).isBetween(Duration.ofMillis(200), Duration.ofMillis(400));
    }

    @Test
    void a_timeout_is_not_retried() {
        assertThatThrownBy(() -> retrier(5, Duration.ofMinutes(1)).run("r", timeout -> {
            attempts.incrementAndGet();
            throw new HttpTimeoutException("request timed out");
        })).isInstanceOfSatisfying(LlavaTimeoutException.class, e -> assertThat(e.requestId()).isEqualTo("r"));
        assertThat(attempts).hasValue(1);
    }

    @Test
    void max_attempts_bounds_the_retries() {
        assertThatThrownBy(() -> retrier(3, Duration.ofHours(1)).run("r", timeout -> {
            attempts.incrementAndGet();
            throw new IOException("connection reset");
        })).isInstanceOf(LlavaConnectionException.class);
        assertThat(attempts).hasValue(3);
    }

    @Test
    void backoff_is_capped() {
        RetryPolicy policy = new RetryPolicy(50, Duration.ofHours(1), Duration.ofMillis(500), Duration.ofSeconds(2));
        assertThat(Retrier.backoff(policy, 40)).isBetween(Duration.ofSeconds(1), Duration.ofSeconds(2));
    }
}
