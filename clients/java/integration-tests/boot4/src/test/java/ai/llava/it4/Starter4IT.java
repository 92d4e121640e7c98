package ai.llava.it4;

import ai.llava.it.shared.StarterChecks;
import org.springframework.boot.autoconfigure.EnableAutoConfiguration;
import org.springframework.boot.test.context.SpringBootTest;
import org.springframework.context.annotation.Configuration;

/** The starter in a Spring Boot 4.0 application (StarterChecks): RestClient from spring-boot-restclient, health from spring-boot-health. */
@SpringBootTest(classes = Starter4IT.App.class, webEnvironment = SpringBootTest.WebEnvironment.RANDOM_PORT)
class Starter4IT extends StarterChecks {

    @Configuration(proxyBeanMethods = false)
    @EnableAutoConfiguration
    static class App {
    }
}
