package ai.llava.client;

/** How the gateway answered an analyze call that succeeded (HTTP 200). */
public enum AnswerStatus {
    /** Answered by the model. */
    SUCCESS,
    /** The same request was answered recently; this is that answer. */
    CACHED,
    /** The model was unavailable; {@code result} is the gateway's friendly message, there is no data. */
    FALLBACK
}
