package ai.llava.spring;

import ai.llava.client.transport.HttpCall;
import ai.llava.client.transport.HttpReply;
import ai.llava.client.transport.Transport;
import org.springframework.http.HttpMethod;
import org.springframework.http.client.ClientHttpResponse;
import org.springframework.web.client.ResourceAccessException;
import org.springframework.web.client.RestClient;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.util.Optional;

/**
 * The client's requests on a Spring {@link RestClient}: the application's interceptors, observations
 * ({@code http.client.requests}) and request factory apply. Answers of every status come back as they
 * are; the client reads them.
 */
public final class RestClientTransport implements Transport {

    private final RestClient restClient;

    public RestClientTransport(RestClient restClient) {
        this.restClient = restClient;
    }

    @Override
    public HttpReply send(HttpCall call) throws IOException {
        RestClient.RequestBodySpec request = restClient.method(HttpMethod.valueOf(call.method())).uri(call.uri())
                .headers(headers -> call.headers().forEach(headers::set));
        if (call.body() != null) {
            request.body(call.body());
        }
        try {
            return request.exchange((sent, response) -> new Reply(response), false);
        } catch (ResourceAccessException e) {
            // RestClient wraps I/O failures; the client tells timeouts from refused connections by the cause.
            throw e.getCause() instanceof IOException io ? io : new IOException(e.getMessage(), e);
        }
    }

    private record Reply(ClientHttpResponse response) implements HttpReply {

        @Override
        public int status() {
            try {
                return response.getStatusCode().value();
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }

        @Override
        public Optional<String> header(String name) {
            return Optional.ofNullable(response.getHeaders().getFirst(name));
        }

        @Override
        public InputStream body() {
            try {
                return response.getBody();
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }

        @Override
        public void close() {
            response.close();
        }
    }
}
