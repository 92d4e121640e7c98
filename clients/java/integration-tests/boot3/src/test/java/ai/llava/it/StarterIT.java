package ai.llava.it;

import ai.llava.it.shared.StarterChecks;
import org.springframework.boot.autoconfigure.EnableAutoConfiguration;
import org.springframework.boot.test.autoconfigure.actuate.observability.AutoConfigureObservability;
import org.springframework.boot.test.context.SpringBootTest;
import org.springframework.context.annotation.Configuration;

/** The starter in a Spring Boot 3.5 application (StarterChecks). */
@SpringBootTest(classes = StarterIT.App.class, webEnvironment = SpringBootTest.WebEnvironment.RANDOM_PORT)
@AutoConfigureObservability(tracing = false)  // Boot 3's tests leave metrics out unless asked
class StarterIT extends StarterChecks {

    @Configuration(proxyBeanMethods = false)
    @EnableAutoConfiguration
    static class App {
    }
}
