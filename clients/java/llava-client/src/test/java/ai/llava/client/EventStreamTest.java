package ai.llava.client;

import org.junit.jupiter.api.Test;

import java.io.ByteArrayInputStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;

class EventStreamTest {

    static List<String> events(String text) {
        List<String> events = new ArrayList<>();
        new EventStream(new ByteArrayInputStream(text.getBytes(StandardCharsets.UTF_8))).forEachRemaining(events::add);
        return events;
    }

    @Test
    void events_are_split_on_blank_lines_and_multi_line_data_is_joined() {
        assertThat(events(": a comment\r\ndata: one\r\n\r\nevent: x\ndata:two\ndata: lines\n\n\n\ndata: [DONE]\n\n"))
                .containsExactly("one", "two\nlines", "[DONE]");
    }

    @Test
    void a_last_event_without_its_blank_line_still_counts() {
        assertThat(events("data: a\n\ndata: b")).containsExactly("a", "b");
    }
}
