package ai.llava.it.shared;

import ai.llava.client.transport.HttpCall;
import ai.llava.client.transport.HttpReply;
import ai.llava.client.transport.JdkTransport;
import ai.llava.client.transport.Transport;

import java.io.IOException;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;

/** The default transport, noting each attempt's status, Retry-After and start time (what retries did). */
public final class RecordingTransport implements Transport {

    public record Attempt(long startedNanos, int status, String retryAfter) {
    }

    private final Transport delegate = new JdkTransport(Duration.ofSeconds(5));
    public final List<Attempt> attempts = new CopyOnWriteArrayList<>();

    @Override
    public HttpReply send(HttpCall call) throws IOException {
        long started = System.nanoTime();
        HttpReply reply = delegate.send(call);
        attempts.add(new Attempt(started, reply.status(), reply.header("Retry-After").orElse(null)));
        return reply;
    }

    public List<Integer> statuses() {
        return attempts.stream().map(Attempt::status).toList();
    }
}
