package ai.llava.client;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.time.ZonedDateTime;
import java.time.format.DateTimeFormatter;
import java.time.format.DateTimeParseException;
import java.util.Optional;

/** The gateway's refusals, in either face's shape, as the client's typed exceptions. */
final class Errors {

    private static final int SNIPPET_CHARS = 200;

    private Errors() {
    }

    /**
     * A non-2xx answer as an exception. Its body is one of the gateway's error shapes: OpenAI's
     * {@code {"error": {...}}}, RFC 9457 problem details, or the native AnalysisResult; anything
     * else (a proxy's HTML page) is quoted briefly.
     */
    static LlavaException fromAnswer(int status, Optional<String> retryAfterHeader, byte[] body, String requestId,
                                     ObjectMapper json) {
        Duration retryAfter = retryAfterHeader.flatMap(Errors::retryAfter).orElse(null);
        JsonNode root = parse(body, json);
        JsonNode error = root.path("error");
        if (error.isObject()) {
            return of(status, text(error, "code"), text(error, "message"), text(error, "param"), retryAfter,
                    requestId);
        }
        if (root.hasNonNull("detail") && root.hasNonNull("code")) {  // application/problem+json
            return of(status, text(root, "code"), text(root, "detail"), text(root, "param"), retryAfter,
                    orElse(text(root, "requestId"), requestId));
        }
        if (root.hasNonNull("status") && root.hasNonNull("result")) {  // the native AnalysisResult
            return of(status, text(root, "status"), text(root, "result"), null, retryAfter,
                    orElse(text(root, "requestId"), requestId));
        }
        String snippet = new String(body, 0, Math.min(body.length, SNIPPET_CHARS), StandardCharsets.UTF_8)
                .replaceAll("\\p{Cntrl}+", " ").strip();
        return of(status, null, "HTTP " + status + (snippet.isEmpty() ? "" : ": " + snippet), null, retryAfter,
                requestId);
    }

    /** An {@code error} event in the middle of a stream (the response itself was 200). */
    static LlavaException fromStreamError(JsonNode error, String requestId) {
        int status = switch (text(error, "type") == null ? "" : text(error, "type")) {
            case "service_unavailable" -> 503;
            case "rate_limit_error" -> 429;
            case "invalid_request_error" -> 400;
            default -> 500;
        };
        return of(status, text(error, "code"), "the stream broke off: " + text(error, "message"), text(error, "param"),
                null, requestId);
    }

    static LlavaException of(int status, String code, String message, String field, Duration retryAfter,
                             String requestId) {
        String text = message == null ? "HTTP " + status : message;
        return switch (status) {
            case 400, 413, 415, 422 -> new ValidationException(text, status, code, field, requestId);
            case 401, 403 -> new AuthenticationException(text, status, code, requestId);
            case 404 -> new NotFoundException(text, code, requestId);
            case 429 -> new OverloadedException(text, code, retryAfter, requestId);
            case 503 -> new ServiceUnavailableException(text, status, code, retryAfter, requestId);
            default -> status >= 500
                    ? new ServerErrorException(text, status, code, requestId)
                    : new LlavaException("CLIENT_ERROR", text, status, code, requestId, null);
        };
    }

    /** Retry-After as seconds or an HTTP date (RFC 9110); a date in the past is no wait. */
    static Optional<Duration> retryAfter(String value) {
        String trimmed = value.strip();
        try {
            return Optional.of(Duration.ofSeconds(Math.max(0, Long.parseLong(trimmed))));
        } catch (NumberFormatException notSeconds) {
            try {
                Duration until = Duration.between(ZonedDateTime.now(),
                        ZonedDateTime.parse(trimmed, DateTimeFormatter.RFC_1123_DATE_TIME));
                return Optional.of(until.isNegative() ? Duration.ZERO : until);
            } catch (DateTimeParseException notDate) {
                return Optional.empty();
            }
        }
    }

    private static JsonNode parse(byte[] body, ObjectMapper json) {
        try {
            JsonNode root = json.readTree(body);
            return root == null ? json.missingNode() : root;
        } catch (IOException notJson) {
            return json.missingNode();
        }
    }

    static String text(JsonNode node, String field) {
        JsonNode value = node.path(field);
        return value.isNull() || value.isMissingNode() ? null : value.asText();
    }

    private static String orElse(String value, String fallback) {
        return value == null || value.isEmpty() ? fallback : value;
    }
}
