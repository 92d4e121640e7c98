package ai.llava.client;

/**
 * One event of a streamed chat completion: text as the model makes it, then the finish reason,
 * then (last) the usage.
 *
 * @param content      new text; empty when the event carries none
 * @param finishReason {@code stop} or {@code length} on the event that ends the answer; else null
 * @param usage        on the last event only; else null
 */
public record ChatDelta(String content, String finishReason, Usage usage) {
}
