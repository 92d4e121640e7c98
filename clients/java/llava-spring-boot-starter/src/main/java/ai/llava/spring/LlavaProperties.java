package ai.llava.spring;

import org.springframework.boot.context.properties.ConfigurationProperties;

import java.time.Duration;

/** Settings of the LLaVA gateway client ({@code llava.*}). */
@ConfigurationProperties("llava")
public class LlavaProperties {

    /** The gateway's URL (with or without /v1), e.g. http://llava-gateway:8080. */
    private String baseUrl = "http://localhost:8080";

    /** API key sent as "Authorization: Bearer" when the gateway has API_KEYS set. */
    private String apiKey;

    /** How long a new connection to the gateway may take. */
    private Duration connectTimeout = Duration.ofSeconds(5);

    /**
     * How long one attempt may wait for its answer (a stream: for its first bytes). The gateway may hold a call
     * for its admission wait and its model timeout (60 s each by default).
     */
    private Duration timeout = Duration.ofMinutes(2);

    private final Retry retry = new Retry();

    private final Health health = new Health();

    public String getBaseUrl() {
        return baseUrl;
    }

    public void setBaseUrl(String baseUrl) {
        this.baseUrl = baseUrl;
    }

    public String getApiKey() {
        return apiKey;
    }

    public void setApiKey(String apiKey) {
        this.apiKey = apiKey;
    }

    public Duration getConnectTimeout() {
        return connectTimeout;
    }

    public void setConnectTimeout(Duration connectTimeout) {
        this.connectTimeout = connectTimeout;
    }

    public Duration getTimeout() {
        return timeout;
    }

    public void setTimeout(Duration timeout) {
        this.timeout = timeout;
    }

    public Retry getRetry() {
        return retry;
    }

    public Health getHealth() {
        return health;
    }

    /** Retries of 429 and 503 answers (after their Retry-After) and of failed connections; never of another 4xx. */
    public static class Retry {

        /** Attempts in all, the first included (1 turns retries off). */
        private int maxAttempts = 5;

        /** The time all attempts of one call and the waits between them may take together. */
        private Duration deadline = Duration.ofMinutes(3);

        /** The first wait when the gateway sent no Retry-After; doubled each time, with jitter. */
        private Duration initialBackoff = Duration.ofMillis(500);

        /** The longest wait when the gateway sent no Retry-After. */
        private Duration maxBackoff = Duration.ofSeconds(10);

        public int getMaxAttempts() {
            return maxAttempts;
        }

        public void setMaxAttempts(int maxAttempts) {
            this.maxAttempts = maxAttempts;
        }

        public Duration getDeadline() {
            return deadline;
        }

        public void setDeadline(Duration deadline) {
            this.deadline = deadline;
        }

        public Duration getInitialBackoff() {
            return initialBackoff;
        }

        public void setInitialBackoff(Duration initialBackoff) {
            this.initialBackoff = initialBackoff;
        }

        public Duration getMaxBackoff() {
            return maxBackoff;
        }

        public void setMaxBackoff(Duration maxBackoff) {
            this.maxBackoff = maxBackoff;
        }
    }

    /** The "llava" health indicator (management.health.llava.enabled turns it off). */
    public static class Health {

        /** How long one look at GET /health/model may take. */
        private Duration timeout = Duration.ofSeconds(2);

        /** How long a look is reused: health checks polled often ask the gateway at most this often. */
        private Duration cacheTtl = Duration.ofSeconds(5);

        /**
         * Failed looks in a row before the indicator says DOWN; until then it keeps the last state it saw, so one
         * slow answer does not flip it.
         */
        private int failureThreshold = 3;

        public Duration getTimeout() {
            return timeout;
        }

        public void setTimeout(Duration timeout) {
            this.timeout = timeout;
        }

        public Duration getCacheTtl() {
            return cacheTtl;
        }

        public void setCacheTtl(Duration cacheTtl) {
            this.cacheTtl = cacheTtl;
        }

        public int getFailureThreshold() {
            return failureThreshold;
        }

        public void setFailureThreshold(int failureThreshold) {
            this.failureThreshold = failureThreshold;
        }
    }
}
