package ai.llava.client;

import ai.llava.client.transport.HttpReply;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.Iterator;
import java.util.NoSuchElementException;
import java.util.Spliterator;
import java.util.Spliterators;
import java.util.stream.Stream;
import java.util.stream.StreamSupport;

/** A streamed chat completion's events as {@link ChatDelta}s; the call ends at [DONE], a failure, or close. */
final class ChatEvents implements Iterator<ChatDelta> {

    private final HttpReply reply;
    private final ObjectMapper json;
    private final String requestId;
    private final CallObserver.Call observed;
    private final EventStream events;
    private ChatDelta next;
    private boolean ended;

    ChatEvents(HttpReply reply, ObjectMapper json, String requestId, CallObserver.Call observed) {
        this.reply = reply;
        this.json = json;
        this.requestId = requestId;
        this.observed = observed;
        this.events = new EventStream(reply.body());
    }

    Stream<ChatDelta> stream() {
        return StreamSupport.stream(Spliterators.spliteratorUnknownSize(this, Spliterator.ORDERED | Spliterator.NONNULL),
                false).onClose(() -> end("CANCELLED", null));
    }

    @Override
    public boolean hasNext() {
        while (next == null && !ended) {
            next = read();
        }
        return next != null;
    }

    @Override
    public ChatDelta next() {
        if (!hasNext()) {
            throw new NoSuchElementException();
        }
        ChatDelta delta = next;
        next = null;
        return delta;
    }

    /** The next delta worth passing on; null when this event carried nothing (or the stream ended). */
    private ChatDelta read() {
        try {
            if (!events.hasNext()) {
                throw new LlavaConnectionException("the stream ended without [DONE]", requestId, null);
            }
            String data = events.next();
            if (data.equals("[DONE]")) {
                end(reply.header("X-Gateway-Status").orElse("SUCCESS"), null);
                return null;
            }
            JsonNode chunk = json.readTree(data);
            if (chunk.path("error").isObject()) {
                throw Errors.fromStreamError(chunk.path("error"), requestId);
            }
            JsonNode choice = chunk.path("choices").path(0);
            String content = choice.path("delta").path("content").asText("");
            String finish = Chats.text(choice.path("finish_reason"));
            Usage usage = Chats.usage(chunk.path("usage"));
            return content.isEmpty() && finish == null && usage == null ? null : new ChatDelta(content, finish, usage);
        } catch (LlavaException e) {
            end(e.kind(), e);
            throw e;
        } catch (IOException | UncheckedIOException e) {
            LlavaException failure = new LlavaConnectionException("the stream broke off: " + e.getMessage(),
                    requestId, e);
            end(failure.kind(), failure);
            throw failure;
        }
    }

    private void end(String status, Throwable error) {
        if (ended) {
            return;
        }
        ended = true;
        try {
            reply.close();
        } catch (IOException ignored) {
            // the call is over either way; nothing left to read from this connection
        }
        observed.end(status, error);
    }
}
