package ai.llava.client;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.util.Iterator;
import java.util.NoSuchElementException;

/**
 * The data of Server-Sent Events, one event at a time. Written here (about 40 lines of the
 * format's rules) rather than taken from a library: the JDK has none, and the event-source
 * libraries bring an HTTP client of their own.
 */
final class EventStream implements Iterator<String> {

    private final BufferedReader reader;
    private String next;
    private boolean done;

    EventStream(InputStream body) {
        this.reader = new BufferedReader(new InputStreamReader(body, StandardCharsets.UTF_8));
    }

    @Override
    public boolean hasNext() {
        if (next == null && !done) {
            next = readEvent();
            done = next == null;
        }
        return next != null;
    }

    @Override
    public String next() {
        if (!hasNext()) {
            throw new NoSuchElementException();
        }
        String event = next;
        next = null;
        return event;
    }

    /** The data lines of the next event joined by newlines; null at the end of the stream. */
    private String readEvent() {
        StringBuilder data = null;
        try {
            for (String line = reader.readLine(); line != null; line = reader.readLine()) {
                if (line.isEmpty()) {
                    if (data != null) {
                        return data.toString();
                    }
                    continue;
                }
                if (line.startsWith("data:")) {
                    String value = line.substring(line.startsWith("data: ") ? 6 : 5);
                    data = data == null ? new StringBuilder(value) : data.append('\n').append(value);
                }
                // comments (":") and the event, id and retry fields carry nothing this client uses
            }
            return data == null ? null : data.toString();
        } catch (IOException e) {
            throw new UncheckedIOException("the stream from the gateway broke off", e);
        }
    }
}
