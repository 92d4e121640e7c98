package ai.llava.client;

/**
 * The gateway's answer to {@code POST /api/v1/multimodal/analyze} (its AnalysisResult).
 *
 * @param status    SUCCESS, CACHED, or FALLBACK (free-text calls only: a call that asked for data
 *                  gets a {@link ServiceUnavailableException} instead)
 * @param result    the answer's text (with a preset or schema: its JSON text)
 * @param requestId the gateway's id for the request (its logs and the model's carry it)
 * @param model     the model that answered; null on FALLBACK
 * @param usage     null when the model did not answer
 * @param latencyMs the gateway's time for the request
 * @param data      with a preset or schema: the answer mapped to the caller's type; null otherwise
 * @param <T>       the caller's type for {@code data}
 */
public record Analysis<T>(AnswerStatus status, String result, String requestId, String model, Usage usage,
                          long latencyMs, T data) {

    public boolean fallback() {
        return status == AnswerStatus.FALLBACK;
    }
}
