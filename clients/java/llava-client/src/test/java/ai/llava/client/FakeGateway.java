package ai.llava.client;

import com.sun.net.httpserver.Headers;
import com.sun.net.httpserver.HttpServer;

import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Deque;
import java.util.List;
import java.util.Map;

/**
 * A scripted HTTP server on loopback standing in for the gateway at the edge of the unit
 * tests: each request gets the next scripted answer and is kept for the test to read.
 */
final class FakeGateway implements AutoCloseable {

    record Request(String method, String path, Headers headers, byte[] body) {
        String text() {
            return new String(body, StandardCharsets.UTF_8);
        }
    }

    record Answer(int status, Map<String, String> headers, List<String> chunks, long pauseMillis) {
        static Answer json(int status, String body, String... headerPairs) {
            Map<String, String> headers = new java.util.LinkedHashMap<>();
            headers.put("Content-Type", "application/json");
            for (int i = 0; i < headerPairs.length; i += 2) {
                headers.put(headerPairs[i], headerPairs[i + 1]);
            }
            return new Answer(status, headers, List.of(body), 0);
        }

        static Answer events(String... events) {
            List<String> chunks = new ArrayList<>();
            for (String event : events) {
                chunks.add("data: " + event + "\n\n");
            }
            return new Answer(200, Map.of("Content-Type", "text/event-stream"), chunks, 0);
        }

        Answer pausedBetweenChunks(long millis) {
            return new Answer(status, headers, chunks, millis);
        }
    }

    private final HttpServer server;
    private final Deque<Answer> script = new ArrayDeque<>();
    final List<Request> requests = Collections.synchronizedList(new ArrayList<>());

    FakeGateway() throws IOException {
        server = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
        server.setExecutor(java.util.concurrent.Executors.newCachedThreadPool());
        server.createContext("/", exchange -> {
            requests.add(new Request(exchange.getRequestMethod(), exchange.getRequestURI().getPath(),
                    exchange.getRequestHeaders(), exchange.getRequestBody().readAllBytes()));
            Answer answer;
            synchronized (script) {
                answer = script.isEmpty() ? Answer.json(500, "{\"unscripted\": true}") : script.poll();
            }
            answer.headers().forEach(exchange.getResponseHeaders()::add);
            exchange.sendResponseHeaders(answer.status(), 0);
            try (OutputStream out = exchange.getResponseBody()) {
                for (String chunk : answer.chunks()) {
                    out.write(chunk.getBytes(StandardCharsets.UTF_8));
                    out.flush();
                    if (answer.pauseMillis() > 0) {
                        Thread.sleep(answer.pauseMillis());
                    }
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            } catch (IOException clientWentAway) {
                // a test that closes a stream early
            }
        });
        server.start();
    }

    FakeGateway then(Answer answer) {
        synchronized (script) {
            script.add(answer);
        }
        return this;
    }

    String url() {
        return "http://127.0.0.1:" + server.getAddress().getPort();
    }

    Request last() {
        return requests.get(requests.size() - 1);
    }

    @Override
    public void close() {
        server.stop(0);
    }
}
