package ai.llava.client;

/**
 * Sees every call of the client from start to end, across its retries (the Spring Boot starter
 * records them as Micrometer observations). Called on the caller's thread; a stream ends where
 * it is closed.
 */
public interface CallObserver {

    CallObserver NONE = operation -> new Call() {
        @Override
        public void requestId(String requestId) {
        }

        @Override
        public void end(String status, Throwable error) {
        }
    };

    /** A call begins: {@code operation} is analyze, presets, chat, chat-stream, models or model-health. */
    Call start(String operation);

    /** One call under way. */
    interface Call {

        /** The client's request id, sent as X-Request-ID on every attempt (unbounded values: not for metric tags). */
        void requestId(String requestId);

        /**
         * The call ended: {@code status} is the gateway's (SUCCESS, CACHED, FALLBACK) or the failure's
         * {@link LlavaException#kind()}; {@code error} is null on success.
         */
        void end(String status, Throwable error);
    }
}
