package ai.llava.example.inspection;

import ai.llava.client.Analysis;
import ai.llava.client.Image;
import ai.llava.client.LlavaClient;
import ai.llava.client.Preset;
import org.springframework.http.MediaType;
import org.springframework.web.bind.annotation.PostMapping;
import org.springframework.web.bind.annotation.RequestParam;
import org.springframework.web.bind.annotation.RestController;
import org.springframework.web.multipart.MultipartFile;

import java.io.IOException;
import java.util.List;

/** POST /inspections with a product photo (multipart part {@code photo}): the model's QC verdict. */
@RestController
public class InspectionController {

    /** The qc-inspection preset's answer, as the gateway's schema spells it. */
    public record QcReport(String verdict, List<Defect> defects) {
    }

    public record Defect(String kind, String location) {
    }

    /** What this app answers: the verdict and defects, and the gateway's request id to trace the call. */
    public record Inspection(String verdict, List<Defect> defects, String requestId) {
    }

    private final LlavaClient llava;

    public InspectionController(LlavaClient llava) {
        this.llava = llava;
    }

    @PostMapping(path = "/inspections", consumes = MediaType.MULTIPART_FORM_DATA_VALUE)
    public Inspection inspect(@RequestParam("photo") MultipartFile photo) throws IOException {
        Analysis<QcReport> answer = llava.analyze(Image.of(photo.getBytes()), Preset.QC_INSPECTION, QcReport.class);
        return new Inspection(answer.data().verdict(), answer.data().defects(), answer.requestId());
    }
}
