package ai.llava.client.transport;

import java.io.IOException;
import java.io.InputStream;
import java.io.InterruptedIOException;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.Optional;

/** The JDK {@code HttpClient} as the client's transport. */
public final class JdkTransport implements Transport {

    private final HttpClient http;

    public JdkTransport(Duration connectTimeout) {
        // HTTP/1.1: the gateway (gunicorn) speaks nothing else, and the JDK's default would
        // offer an h2c upgrade on every new connection only to have it ignored.
        this(HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).connectTimeout(connectTimeout)
                .followRedirects(HttpClient.Redirect.NEVER).build());
    }

    public JdkTransport(HttpClient http) {
        this.http = http;
    }

    @Override
    public HttpReply send(HttpCall call) throws IOException {
        HttpRequest.Builder request = HttpRequest.newBuilder(call.uri()).timeout(call.timeout());
        call.headers().forEach(request::header);
        request.method(call.method(), call.body() == null ? HttpRequest.BodyPublishers.noBody()
                : HttpRequest.BodyPublishers.ofByteArray(call.body()));
        try {
            HttpResponse<InputStream> response = http.send(request.build(), HttpResponse.BodyHandlers.ofInputStream());
            return new Reply(response);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new InterruptedIOException("interrupted while waiting for " + call.uri());
        }
    }

    private record Reply(HttpResponse<InputStream> response) implements HttpReply {

        @Override
        public int status() {
            return response.statusCode();
        }

        @Override
        public Optional<String> header(String name) {
            return response.headers().firstValue(name);
        }

        @Override
        public InputStream body() {
            return response.body();
        }

        @Override
        public void close() throws IOException {
            response.body().close();
        }
    }
}
