package ai.llava.client;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.URI;
import java.net.URL;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Objects;

/**
 * An image to ask about: bytes, a file, or a URL the client downloads (file: or http(s):).
 * The gateway judges the bytes, not the name: JPEG, PNG, WebP and GIF are accepted.
 *
 * <p>The client always sends the image itself: the gateway refuses to fetch remote URLs unless
 * its operator allowed the host ({@code REMOTE_IMAGE_HOSTS}), so a URL is downloaded here, with
 * the client's timeouts and without its API key.
 */
public final class Image {

    private final byte[] bytes;
    private final Path path;
    private final URI uri;

    private Image(byte[] bytes, Path path, URI uri) {
        this.bytes = bytes;
        this.path = path;
        this.uri = uri;
    }

    public static Image of(byte[] bytes) {
        return new Image(Objects.requireNonNull(bytes, "bytes").clone(), null, null);
    }

    /** A file, read when the call is made. */
    public static Image of(Path path) {
        return new Image(null, Objects.requireNonNull(path, "path"), null);
    }

    /** A file: or http(s): URL, downloaded when the call is made. */
    public static Image of(URI uri) {
        Objects.requireNonNull(uri, "uri");
        String scheme = String.valueOf(uri.getScheme()).toLowerCase(java.util.Locale.ROOT);
        if (scheme.equals("file")) {
            return of(Path.of(uri));
        }
        if (!scheme.equals("http") && !scheme.equals("https")) {
            throw new IllegalArgumentException("an image URL must be file:, http: or https:, not " + uri);
        }
        return new Image(null, null, uri);
    }

    public static Image of(URL url) {
        try {
            return of(url.toURI());
        } catch (java.net.URISyntaxException e) {
            throw new IllegalArgumentException("not a valid URL: " + url, e);
        }
    }

    /** The name sent with an upload (the gateway ignores it; logs may show it). */
    String fileName() {
        if (path != null && path.getFileName() != null) {
            return path.getFileName().toString();
        }
        if (uri != null && uri.getPath() != null && !uri.getPath().endsWith("/")) {
            return uri.getPath().substring(uri.getPath().lastIndexOf('/') + 1);
        }
        return "image";
    }

    URI remote() {
        return uri;
    }

    /** The bytes of an image given as bytes or a file; null for a URL (the client downloads it). */
    byte[] localBytes(long maxBytes) {
        if (bytes != null) {
            return bytes;
        }
        if (path == null) {
            return null;
        }
        try {
            if (Files.size(path) > maxBytes) {
                throw new ValidationException("the image file " + path + " is over " + maxBytes + " bytes", 0, null,
                        "image", null);
            }
            return Files.readAllBytes(path);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read the image file " + path, e);
        }
    }

    @Override
    public String toString() {
        return bytes != null ? "Image(" + bytes.length + " bytes)" : "Image(" + (path != null ? path : uri) + ")";
    }
}
