package ai.llava.client;

import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.api.Test;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.time.ZonedDateTime;
import java.time.format.DateTimeFormatter;
import java.util.Optional;

import static org.assertj.core.api.Assertions.assertThat;

class ErrorsTest {

    static LlavaException answer(int status, String body, String retryAfter) {
        return Errors.fromAnswer(status, Optional.ofNullable(retryAfter), body.getBytes(StandardCharsets.UTF_8), "sent",
                new ObjectMapper());
    }

    @ParameterizedTest(name = "{0} -> {1}")
    @CsvSource({
            "400, ValidationException", "413, ValidationException", "415, ValidationException",
            "401, AuthenticationException", "404, NotFoundException", "405, LlavaException",
            "429, OverloadedException", "503, ServiceUnavailableException", "500, ServerErrorException",
            "502, ServerErrorException"})
    void each_status_has_its_exception(int status, String type) {
        LlavaException e = answer(status, "{\"error\":{\"message\":\"m\",\"type\":\"t\",\"param\":null,\"code\":\"c\"}}",
                null);
        assertThat(e.getClass().getSimpleName()).isEqualTo(type);
        assertThat(e.httpStatus()).isEqualTo(status);
        assertThat(e.retryable()).isEqualTo(status == 429 || status == 503);
    }

    @Test
    void the_openai_shape_gives_the_param_and_code() {
        ValidationException e = (ValidationException) answer(400, "{\"error\":{\"message\":\"not an image\","
                + "\"type\":\"invalid_request_error\",\"param\":\"messages[0].content[1].image_url.url\","
                + "\"code\":\"invalid_image\"}}", null);
        assertThat(e.field()).isEqualTo("messages[0].content[1].image_url.url");
        assertThat(e.code()).isEqualTo("invalid_image");
        assertThat(e.getMessage()).isEqualTo("not an image");
        assertThat(e.requestId()).isEqualTo("sent");
    }

    @Test
    void the_native_answer_gives_its_status_as_the_code() {
        LlavaException e = answer(429, "{\"status\":\"OVERLOADED\",\"result\":\"the line is full; retry in 2 s\","
                + "\"requestId\":\"gw-1\",\"model\":null,\"usage\":null,\"latencyMs\":0,\"data\":null}", "2");
        assertThat(e).isInstanceOf(OverloadedException.class);
        assertThat(e.code()).isEqualTo("OVERLOADED");
        assertThat(e.requestId()).isEqualTo("gw-1");
        assertThat(e.retryAfter()).contains(Duration.ofSeconds(2));
    }

    @Test
    void a_proxy_page_is_quoted_briefly() {
        LlavaException e = answer(502, "<html>\n<body>Bad Gateway</body>\n</html>" + "x".repeat(500), null);
        assertThat(e).isInstanceOf(ServerErrorException.class);
        assertThat(e.getMessage()).startsWith("HTTP 502: <html> <body>Bad Gateway").hasSizeLessThan(220);
    }

    @Test
    void retry_after_is_read_as_seconds_or_an_http_date() {
        assertThat(Errors.retryAfter("7")).contains(Duration.ofSeconds(7));
        String inTenSeconds = DateTimeFormatter.RFC_1123_DATE_TIME.format(ZonedDateTime.now().plusSeconds(10));
        assertThat(Errors.retryAfter(inTenSeconds).orElseThrow()).isBetween(Duration.ofSeconds(8), Duration.ofSeconds(10));
        assertThat(Errors.retryAfter("Mon, 01 Jan 2001 00:00:00 GMT")).contains(Duration.ZERO);
        assertThat(Errors.retryAfter("soon")).isEmpty();
    }

    @Test
    void a_stream_error_maps_by_its_type() {
        ObjectMapper json = new ObjectMapper();
        assertThat(Errors.fromStreamError(json.createObjectNode().put("type", "server_error").put("message", "x"), "r"))
                .isInstanceOf(ServerErrorException.class);
        assertThat(Errors.fromStreamError(json.createObjectNode().put("type", "rate_limit_error"), "r"))
                .isInstanceOf(OverloadedException.class);
    }
}
