package ai.llava.client.transport;

import java.net.URI;
import java.time.Duration;
import java.util.Map;

/**
 * One HTTP request as the client means it, whatever carries it.
 *
 * @param method  GET or POST
 * @param uri     absolute
 * @param headers sent as given (Content-Type included when there is a body)
 * @param body    null for none
 * @param timeout how long this attempt may wait for the response headers
 */
public record HttpCall(String method, URI uri, Map<String, String> headers, byte[] body, Duration timeout) {

    public HttpCall {
        headers = Map.copyOf(headers);
    }

    public HttpCall withTimeout(Duration newTimeout) {
        return new HttpCall(method, uri, headers, body, newTimeout);
    }
}
