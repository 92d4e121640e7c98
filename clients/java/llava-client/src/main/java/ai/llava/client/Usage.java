package ai.llava.client;

/** Tokens the model read and wrote for an answer (a cached answer reports the original's). */
public record Usage(int promptTokens, int completionTokens) {
}
