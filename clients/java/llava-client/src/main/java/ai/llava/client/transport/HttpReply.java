package ai.llava.client.transport;

import java.io.Closeable;
import java.io.InputStream;
import java.util.Optional;

/** A response whose headers have arrived; its body is read (and then closed) by the client. */
public interface HttpReply extends Closeable {

    int status();

    /** The first value of a header, by case-insensitive name. */
    Optional<String> header(String name);

    InputStream body();
}
