package ai.llava.example.inspection;

import ai.llava.client.LlavaException;
import ai.llava.client.OverloadedException;
import ai.llava.client.ServiceUnavailableException;
import ai.llava.client.ValidationException;
import org.springframework.http.HttpHeaders;
import org.springframework.http.HttpStatus;
import org.springframework.http.ProblemDetail;
import org.springframework.http.ResponseEntity;
import org.springframework.web.bind.annotation.ExceptionHandler;
import org.springframework.web.bind.annotation.RestControllerAdvice;

/**
 * The gateway's refusals as this app's answers: a bad photo is the caller's 400; a busy or restarting
 * model (after the client's retries) is 503 with the wait the gateway asked for; anything else 502.
 */
@RestControllerAdvice
public class GatewayErrors {

    @ExceptionHandler(ValidationException.class)
    ProblemDetail invalid(ValidationException e) {
        ProblemDetail problem = ProblemDetail.forStatusAndDetail(HttpStatus.BAD_REQUEST, e.getMessage());
        if (e.field() != null) {
            problem.setProperty("field", e.field());
        }
        problem.setProperty("requestId", e.requestId());
        return problem;
    }

    @ExceptionHandler({OverloadedException.class, ServiceUnavailableException.class})
    ResponseEntity<ProblemDetail> unavailable(LlavaException e) {
        ProblemDetail problem = ProblemDetail.forStatusAndDetail(HttpStatus.SERVICE_UNAVAILABLE,
                "the inspection model is busy or restarting; try again shortly");
        problem.setProperty("requestId", e.requestId());
        ResponseEntity.BodyBuilder answer = ResponseEntity.status(HttpStatus.SERVICE_UNAVAILABLE);
        e.retryAfter().ifPresent(wait -> answer.header(HttpHeaders.RETRY_AFTER, String.valueOf(wait.toSeconds())));
        return answer.body(problem);
    }

    @ExceptionHandler(LlavaException.class)
    ProblemDetail failed(LlavaException e) {
        ProblemDetail problem = ProblemDetail.forStatusAndDetail(HttpStatus.BAD_GATEWAY, "the inspection failed ("
                + e.kind() + ")");
        problem.setProperty("requestId", e.requestId());
        return problem;
    }
}
